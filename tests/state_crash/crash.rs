//! The crash test's rounds: churn from clients on backends of their own, `kill -9` of lb at a
//! random moment, then the state file and the view lb restores from it checked against what
//! each client was answered and what it had in flight.

use super::churn::{self, check_deadline, parse_state, unix_ms, Reg, Round, Seen, Track};
use super::common::admin::Api;
use super::common::rng::XorShift;
use super::common::{eventually, Lb, TempDir, PATIENCE};
use super::pool_config;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Clients changing backends at once, each on backends of its own.
const CLIENTS: usize = 8;
/// Backends each client owns.
const OWNED: usize = 12;
/// Most requests a client sends in one round (lb is killed long before).
const ROUND_LIMIT: usize = 5_000;

/// The backends client `c` owns: addresses on 127.0.{c+1}.0/24 that nothing listens on (the
/// churn sends them no traffic, and the pool has no health check).
fn owned(c: usize) -> BTreeMap<SocketAddr, Track> {
    (0..OWNED)
        .map(|i| {
            let addr = format!("127.0.{}.{}:8080", c + 1, i + 1).parse().expect("address");
            (addr, Track::default())
        })
        .collect()
}

/// A directory on tmpfs when there is one. `kill -9` ends the process, not the kernel, so what
/// lb wrote survives it there as on a disk; and the churn is not held back by the disk's fsyncs
/// (about 11 ms each on the CI machine's ext4, and every change waits for two).
pub fn tmpfs_dir(tag: &str) -> TempDir {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return TempDir::new(tag);
    }
    let dir = shm.join(format!("lb-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("directory on tmpfs");
    TempDir(dir)
}

/// `kills` rounds of: churn from [`CLIENTS`] clients, `kill -9` of lb once a random number of
/// requests in `answers` were answered, checks of the state file against what the clients were
/// answered, a restart on the same configuration and file, and the same checks of the view
/// lb restored. Each round starts from the state the last one restored.
pub async fn churn_and_kill(state_dir: &TempDir, kills: usize, answers: Range<usize>) {
    let seed = unix_ms() | 1;
    let mut rng = XorShift(seed);
    let state_file = state_dir.path("state.json");
    let backends = ["{address: 127.0.0.1:9}".to_string()];
    let mut lb = Lb::start(&pool_config(&backends, &state_file.display().to_string()));
    let mut tracks: Vec<BTreeMap<SocketAddr, Track>> = (0..CLIENTS).map(owned).collect();
    for kill in 1..=kills {
        let started = Instant::now();
        let target = answers.start + rng.below(answers.len());
        let (seen, answered, killed_at) = churn_until_killed(&mut lb, &tracks, target, rng.next()).await;
        let context = format!("seed {seed}, kill {kill}");
        let text = std::fs::read_to_string(&state_file).unwrap_or_else(|e| panic!("{context}: {e}"));
        let written = parse_state(&text);
        let figures = check_written(&seen, &written, killed_at, &context);

        lb = lb.restart();
        let restored = restored_view(&Api::new(lb.admin())).await;
        let file_view: BTreeMap<SocketAddr, Reg> = written.iter().map(|(a, (r, _))| (*a, r.clone())).collect();
        assert_eq!(restored, file_view, "{context}: lb restored what the file holds");
        eprintln!(
            "kill {kill}: {answered} answered, {} in flight ({} of them written), {} heartbeats checked, \
             {} backends registered; {:?}",
            figures.in_flight,
            figures.written,
            figures.heartbeats,
            written.len(),
            started.elapsed()
        );
        tracks = seen.into_iter().map(|s| next_round(s.tracks, &written)).collect();
    }
}

/// Runs one round of churn and kills lb (SIGKILL) once `target` requests were answered:
/// what each client saw, how many were answered, and when lb was killed.
async fn churn_until_killed(
    lb: &mut Lb,
    tracks: &[BTreeMap<SocketAddr, Track>],
    target: usize,
    seed: u64,
) -> (Vec<Seen>, usize, u64) {
    let round = Arc::new(Round::default());
    let clients: Vec<_> = tracks
        .iter()
        .enumerate()
        .map(|(c, t)| {
            let client_seed = seed.wrapping_add(c as u64 * 0x9e37_79b9) | 1;
            let client = churn::client(lb.admin(), client_seed, t.clone(), Arc::clone(&round), ROUND_LIMIT);
            tokio::spawn(client)
        })
        .collect();
    let reached = eventually(PATIENCE, async || round.answered.load(Ordering::SeqCst) >= target).await;
    round.killed.store(true, Ordering::SeqCst);
    lb.proc.0.kill().expect("SIGKILL lb");
    let killed_at = unix_ms();
    assert!(reached, "only {:?} of {target} answered", round.answered);
    let mut seen = Vec::new();
    for client in clients {
        seen.push(client.await.expect("a client failed"));
    }
    (seen, round.answered.load(Ordering::SeqCst), killed_at)
}

/// What one round's check counted.
struct Figures {
    in_flight: usize,
    written: usize,
    heartbeats: usize,
}

/// Checks the state file's registrations `written` against what the clients saw: each backend
/// has its last answered state or the one after its request in flight, and a deadline no older
/// than what was answered before the last write that had to include it.
fn check_written(
    seen: &[Seen],
    written: &BTreeMap<SocketAddr, (Reg, Option<u64>)>,
    killed_at: u64,
    context: &str,
) -> Figures {
    // Every heartbeat answered before a change was sent is in that change's write; and lb
    // answers a heartbeat without writing only while the oldest unwritten one is under 1 s old.
    let last_change = seen.iter().map(|s| s.last_change_sent).max().unwrap_or(0);
    let last_heartbeat = seen.iter().map(|s| s.last_heartbeat_sent).max().unwrap_or(0);
    let written_by = last_change.max(last_heartbeat.saturating_sub(1000));
    let mut figures = Figures {
        in_flight: 0,
        written: 0,
        heartbeats: 0,
    };
    for (addr, track) in seen.iter().flat_map(|s| &s.tracks) {
        let file = written.get(addr);
        let state = file.map(|(r, _)| r.clone());
        assert!(
            track.allowed().contains(&state),
            "{context}: {addr}: the state file has {state:?}; answered {:?}, in flight {:?}",
            track.answered,
            track.in_flight
        );
        if track.in_flight.is_some() {
            figures.in_flight += 1;
            figures.written += usize::from(state != track.answered);
        }
        if let (Some((_, Some(deadline))), Some(Reg { ttl: true, .. })) = (file, &track.answered) {
            let checked = check_deadline(track, *deadline, written_by, killed_at);
            checked.unwrap_or_else(|e| panic!("{context}: {addr}: {e}; {track:?}"));
            figures.heartbeats += track.heartbeats.iter().filter(|(r, _)| *r < written_by).count();
        }
    }
    let tracked = seen.iter().flat_map(|s| s.tracks.keys()).count();
    let strangers: Vec<_> = written
        .keys()
        .filter(|a| !seen.iter().any(|s| s.tracks.contains_key(a)))
        .collect();
    assert!(
        strangers.is_empty(),
        "{context}: not registered by any client: {strangers:?}"
    );
    assert_eq!(tracked, CLIENTS * OWNED);
    assert!(figures.in_flight > 0, "{context}: lb was not killed mid-churn");
    figures
}

/// Pool web's registered backends as the API shows them; the file's backend is untouched.
async fn restored_view(api: &Api) -> BTreeMap<SocketAddr, Reg> {
    let pool = api.pool("web").await;
    let backends = pool["backends"].as_array().cloned().unwrap_or_default();
    let (registered, file): (Vec<Value>, Vec<Value>) = backends.into_iter().partition(|b| b["source"] == "api");
    assert_eq!(file.len(), 1, "{pool}");
    assert_eq!(
        Reg::from_view(&file[0]),
        Reg::from_view(&serde_json::json!({"weight": 1, "state": "ready", "ttl_remaining_s": null}))
    );
    registered
        .iter()
        .map(|b| {
            (
                b["address"].as_str().and_then(|a| a.parse().ok()).expect("address"),
                Reg::from_view(b),
            )
        })
        .collect()
}

/// The next round's tracks of a client: what the file held, as restored.
fn next_round(
    tracks: BTreeMap<SocketAddr, Track>,
    written: &BTreeMap<SocketAddr, (Reg, Option<u64>)>,
) -> BTreeMap<SocketAddr, Track> {
    tracks
        .into_keys()
        .map(|addr| {
            let file = written.get(&addr);
            let track = Track {
                answered: file.map(|(r, _)| r.clone()),
                floor_ms: file.and_then(|(_, d)| *d),
                ..Track::default()
            };
            (addr, track)
        })
        .collect()
}
