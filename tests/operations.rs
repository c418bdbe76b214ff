//! The operations issue through real processes on loopback: `lb -d` returns once serving and
//! cleans its pid file on SIGTERM; `lb upgrade` under constant load loses no request and
//! carries a config change; SIGTERM lets an in-flight request finish; a broken config never
//! touches the running process; the image's ENTRYPOINT/CMD run as a non-root user with the
//! mounted conf/ layout; lb as PID 1 reloads its child on SIGHUP and upgrades it on SIGUSR2.

mod common;

use common::daemon::{alive, read_pid, start_daemon, Daemon};
use common::load::start_load;
use common::{eventually, get, run_lb, signal, write_config, Demo, Lb, TempDir, LB, PATIENCE};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn daemon_config(backends: &[&Demo]) -> String {
    let list: Vec<String> = backends.iter().map(|d| d.yaml()).collect();
    format!(
        "server: {{daemon: true, pid_file: {{dir}}/lb.pid, upgrade_sock: {{dir}}/upgrade.sock, \
         error_log: {{dir}}/error.log, threads: 2, grace_period_seconds: 5, graceful_shutdown_timeout_seconds: 2}}
listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  web:
    backends: [{}]
    health_check: {{path: /healthz, interval: 500ms}}
",
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_serves_when_lb_d_returns_and_sigterm_removes_its_pid_file() {
    let a = Demo::start("a");
    let dir = TempDir::new("daemon");
    let listen = common::free_addr();
    let (daemon, _) = start_daemon(&dir, &daemon_config(&[&a]), listen);
    // No polling: `lb -d` returned, so the listener must already accept.
    let resp = get(listen, "/").await.expect("daemon not serving when lb -d returned");
    assert_eq!((resp.status, resp.backend()), (200, "a".to_string()));
    let log = std::fs::read_to_string(dir.path("error.log")).unwrap();
    assert!(log.contains("lb ready"), "error_log lacks the ready line:\n{log}");

    signal(daemon.pid, "TERM");
    let gone = eventually(PATIENCE, async || !alive(daemon.pid)).await;
    assert!(gone, "daemon still running after SIGTERM");
    assert!(!dir.path("lb.pid").exists(), "pid file left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_under_load_drops_nothing_and_carries_the_new_config() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let dir = TempDir::new("upgrade");
    let listen = common::free_addr();
    let (old, conf) = start_daemon(&dir, &daemon_config(&[&a, &b]), listen);

    let (load, tasks) = start_load(listen, 16);
    let warm = eventually(PATIENCE, async || load.ok.load(Ordering::Relaxed) >= 1000).await;
    assert!(warm, "the load did not get going");
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "a stream ended before the upgrade"
    );
    write_config(&dir, &daemon_config(&[&a, &b, &c]), listen);
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || run_lb(&["upgrade", "-c", &conf]))
        .await
        .unwrap();
    // Guarded at once, so that a failing assertion below does not leave it running.
    let new = Daemon {
        pid: read_pid(&dir.path("lb.pid")),
    };
    assert!(status.success(), "upgrade failed: {stdout}{stderr}");
    assert!(stdout.contains("upgraded: new pid"), "{stdout}");
    load.mark.store(true, Ordering::Relaxed);
    let c_answered = eventually(PATIENCE, async || load.after_mark.lock().unwrap().contains("c")).await;
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let log = std::fs::read_to_string(dir.path("error.log")).unwrap_or_default();
    let errors = load.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} failed of {}: {:?}\n{log}",
        errors.len(),
        load.ok.load(Ordering::Relaxed),
        &errors[..errors.len().min(10)]
    );
    assert!(
        load.ok.load(Ordering::Relaxed) > 1000,
        "too little load to mean anything"
    );
    assert!(
        eventually(PATIENCE, async || !alive(old.pid)).await,
        "old pid {} still running",
        old.pid
    );
    assert!(new.pid != old.pid && alive(new.pid), "new pid {} not running", new.pid);
    assert!(c_answered, "the new backend c never answered");
    assert_eq!(get(listen, "/").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let a = Demo::start("a");
    let yaml = format!(
        "server: {{grace_period_seconds: 10, graceful_shutdown_timeout_seconds: 2}}
listeners: [{{address: \"{{listen}}\"}}]
upstreams: {{web: {{backends: [{}]}}}}
",
        a.yaml()
    );
    let mut lb = Lb::start(&yaml);
    let addr = lb.addr;
    let slow = tokio::spawn(async move { get(addr, "/delay/2000").await });
    let in_flight = eventually(PATIENCE, async || a.stat("inflight").await == Some(1)).await;
    assert!(in_flight, "the slow request never reached the backend");

    let sent = Instant::now();
    lb.proc.signal("TERM");
    let refused = eventually(PATIENCE, async || tokio::net::TcpStream::connect(addr).await.is_err()).await;
    assert!(refused, "the listener still accepts after SIGTERM");
    let refused_after = sent.elapsed();
    let resp = slow.await.unwrap().expect("in-flight request failed");
    assert_eq!((resp.status, resp.text()), (200, "a\n".to_string()));
    assert!(
        refused_after < Duration::from_secs(2),
        "listener closed only after {refused_after:?}"
    );
    let status = lb.proc.wait_exit(PATIENCE).expect("lb did not exit");
    assert_eq!(status.code(), Some(0), "{}", lb.log());
    assert!(lb.log().contains("no request in flight, exiting"), "{}", lb.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_leaves_the_running_lb_untouched() {
    let a = Demo::start("a");
    let dir = TempDir::new("broken");
    let listen = common::free_addr();
    let (daemon, conf) = start_daemon(&dir, &daemon_config(&[&a]), listen);
    std::fs::write(
        &conf,
        std::fs::read_to_string(&conf)
            .unwrap()
            .replace("backends:", "backendz:"),
    )
    .unwrap();

    let (status, _, stderr) = run_lb(&["upgrade", "-c", &conf]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("upstreams.web.backendz: unknown field"), "{stderr}");
    assert_eq!(read_pid(&dir.path("lb.pid")), daemon.pid);
    assert!(alive(daemon.pid));
    assert_eq!(get(listen, "/").await.unwrap().status, 200);

    // A valid config whose new process fails before taking over (it cannot create its upgrade
    // socket): the old process is never signalled.
    let other = Demo::start("b");
    let unusable_sock = daemon_config(&[&other]).replace("{dir}/upgrade.sock", "/nonexistent/upgrade.sock");
    write_config(&dir, &unusable_sock, listen);
    let (status, stdout, stderr) = run_lb(&["upgrade", "-c", &conf]);
    assert_eq!(status.code(), Some(1), "{stdout}");
    let untouched = format!("the running lb (pid {}) is untouched", daemon.pid);
    assert!(stderr.contains(&untouched), "{stderr}");
    assert!(alive(daemon.pid));
    assert_eq!(read_pid(&dir.path("lb.pid")), daemon.pid);
    assert_eq!(get(listen, "/").await.unwrap().backend(), "a");
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Runs `script` with bash in fresh network and PID namespaces (its own loopback, so the shipped
/// config's fixed ports cannot collide with anything). Needs root: the tests that call it are
/// `#[ignore]`d, and `scripts/test` runs them when it runs as root (CI does).
fn in_netns(script: &str) -> Output {
    assert!(is_root(), "{NEEDS_ROOT}");
    let full = format!("ip link set lo up 2>/dev/null || true\n{script}");
    // Bounded: `timeout` kills unshare after two minutes, and --kill-child takes the namespace's
    // PID 1 (bash) down with it, and so every process in it.
    Command::new("timeout")
        .args([
            "-s",
            "KILL",
            "120",
            "unshare",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "bash",
            "-c",
            &full,
        ])
        .output()
        .expect("unshare")
}

const NEEDS_ROOT: &str = "needs root (network and PID namespaces): scripts/test runs it as root";

#[test]
#[ignore = "needs root (network and PID namespaces): scripts/test runs it as root"]
fn the_image_entrypoint_runs_as_non_root_with_the_mounted_conf_layout() {
    let root = TempDir::new("image");
    let etc = root.path("etc/lb");
    std::fs::create_dir_all(&etc).unwrap();
    for entry in std::fs::read_dir(common::crate_dir().join("conf")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, etc.join(path.file_name().unwrap())).unwrap();
    }
    let dockerfile = std::fs::read_to_string(common::crate_dir().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(r#"ENTRYPOINT ["lb"]"#) && dockerfile.contains(r#"CMD ["-c", "/etc/lb/lb.yaml"]"#));
    // chmod so the unprivileged user can reach the copied config, as a read-only mount would.
    let _ = Command::new("chmod")
        .args(["-R", "a+rX", root.0.to_str().unwrap()])
        .status();
    let conf = etc.join("lb.yaml");
    let script = format!(
        "{demo} a=127.0.0.1:9001 b=127.0.0.1:9002 c=127.0.0.1:9003 >/dev/null 2>&1 &
setpriv --reuid=65534 --regid=65534 --clear-groups {lb} -c {conf} 2>{log} &
LB=$!
for i in $(seq 300); do {lb} probe -c {conf} >/dev/null 2>&1 && break; sleep 0.1; done
for i in 1 2 3; do {lb} probe --addr 127.0.0.1:8080 -c {conf} >/dev/null; done
for i in 1 2 3; do
  exec 3<>/dev/tcp/127.0.0.1/8080
  printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' >&3
  timeout 5 cat <&3 | tail -n 1
  exec 3>&-
done | sort | tr '\\n' ' '
echo; echo user=$(ps -o user= -p $LB)
kill -TERM $LB; wait $LB; echo exit=$?
kill %1",
        demo = common::DEMO,
        lb = LB,
        conf = conf.display(),
        log = root.path("lb.log").display(),
    );
    let out = in_netns(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(root.path("lb.log")).unwrap_or_default();
    assert!(
        text.contains("a b c"),
        "no rotation through the image's config: {text}\n{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("user=nobody") || text.contains("user=65534"), "{text}");
    assert!(text.contains("exit=0"), "{text}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root (network and PID namespaces): scripts/test runs it as root"]
async fn as_pid_1_lb_reloads_its_child_on_sighup_and_upgrades_it_on_sigusr2() {
    assert!(is_root(), "{NEEDS_ROOT}");
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let dir = TempDir::new("pid1");
    let listen = common::free_addr();
    let yaml = |backends: &[&Demo]| {
        let list: Vec<String> = backends.iter().map(|d| d.yaml()).collect();
        format!(
            "server: {{upgrade_sock: {{dir}}/upgrade.sock, grace_period_seconds: 3}}\n\
             listeners: [{{address: \"{{listen}}\"}}]\nupstreams: {{web: {{backends: [{}]}}}}\n",
            list.join(", ")
        )
    };
    let conf = write_config(&dir, &yaml(&[&a]), listen);
    let log = std::fs::File::create(dir.path("lb.log")).unwrap();
    let child = Command::new("unshare")
        // --kill-child: when the guard kills unshare, the namespace's lb goes with it.
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            LB,
            "-c",
            conf.to_str().unwrap(),
        ])
        .stderr(log)
        .spawn()
        .expect("unshare");
    let unshare = common::Guard(child);
    assert!(eventually(PATIENCE, async || get(listen, "/").await.is_ok()).await);
    // The namespace's PID 1 is unshare's child.
    let children = format!("/proc/{0}/task/{0}/children", unshare.pid());
    let pid1: u32 = std::fs::read_to_string(children).unwrap().trim().parse().unwrap();

    let (load, tasks) = start_load(listen, 8);
    let warm = eventually(PATIENCE, async || load.ok.load(Ordering::Relaxed) >= 500).await;
    assert!(warm, "the load did not get going");
    // SIGHUP: the serving child re-reads the file and switches pools in place.
    write_config(&dir, &yaml(&[&b]), listen);
    signal(pid1, "HUP");
    let reloaded = eventually(PATIENCE, async || {
        get(listen, "/").await.is_ok_and(|r| r.backend() == "b")
    })
    .await;
    let after_reload = load.ok.load(Ordering::Relaxed) + 500;
    let _ = eventually(PATIENCE, async || load.ok.load(Ordering::Relaxed) >= after_reload).await;
    // SIGUSR2: a new child takes the listeners over with the file as it is now.
    write_config(&dir, &yaml(&[&a]), listen);
    signal(pid1, "USR2");
    let upgraded = eventually(PATIENCE, async || {
        get(listen, "/").await.is_ok_and(|r| r.backend() == "a")
    })
    .await;
    // Keep the load on for a few hundred more requests after the switch.
    let done = load.ok.load(Ordering::Relaxed) + 500;
    let _ = eventually(PATIENCE, async || load.ok.load(Ordering::Relaxed) >= done).await;
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let text = std::fs::read_to_string(dir.path("lb.log")).unwrap_or_default();
    assert!(reloaded && upgraded, "reload {reloaded}, upgrade {upgraded}:\n{text}");
    let errors = load.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{:?}\n{text}", &errors[..errors.len().min(10)]);
    assert!(text.contains("configuration reloaded in place"), "{text}");
    assert_eq!(text.matches("upgrade: pid").count(), 1, "{text}");

    signal(pid1, "TERM");
    let mut unshare = unshare;
    let status = unshare.wait_exit(PATIENCE).expect("supervisor did not stop");
    assert!(status.success(), "{status:?}\n{text}");
}

#[test]
fn probe_reports_whether_lb_answers() {
    let free = common::free_addr().to_string();
    let (status, _, err) = run_lb(&["probe", "--addr", &free, "--backend", "127.0.0.1:9"]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains(&free), "{err}");

    let a = Demo::start("a");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nupstreams: {{web: {{backends: [{}]}}}}\n",
        a.yaml()
    ));
    let addr = lb.addr.to_string();
    let (status, out, err) = run_lb(&["probe", "--addr", &addr, "--backend", "127.0.0.1:9"]);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(out.contains(&format!("http://{addr} answered 200")), "{out}");
}
