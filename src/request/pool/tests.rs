//! Picking, draining and membership changes of a pool, without sockets.
use super::*;
use crate::config::{BackendConf, Dur, SameSite};

fn conf(algorithm: Algorithm, n: u8) -> Upstream {
    let backends = (1..=n)
        .map(|i| BackendConf {
            address: crate::config::Addr(format!("127.0.0.{i}:80").parse().unwrap()),
            weight: 1,
            max_connections: None,
            source: Default::default(),
        })
        .collect();
    let mut conf = Upstream::new(backends);
    conf.algorithm = algorithm;
    conf
}

fn sticky_pool() -> Pool {
    Pool::from_config("web", &conf(Algorithm::Sticky, 3)).unwrap()
}

fn request_with_cookie(cookie: Option<&str>) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    if let Some(c) = cookie {
        req.append_header("cookie", format!("lb_sticky={c}")).unwrap();
    }
    req
}

fn pinned_value(picked: &Picked) -> String {
    cookie_value(sticky_id("web", &picked.lease.state().addr))
}

#[test]
fn drain_keeps_pinned_sticky_clients_and_maint_moves_them_once() {
    let pool = sticky_pool();
    let first = pool
        .pick_now(pool.key(&request_with_cookie(None), None).as_bytes(), &[])
        .unwrap();
    let pinned = pinned_value(&first);
    let state = Arc::clone(first.lease.state());
    drop(first);
    let req = request_with_cookie(Some(&pinned));
    state.set_admin(AdminState::Drain);
    for _ in 0..5 {
        let again = pool.pick_now(pool.key(&req, None).as_bytes(), &[]).unwrap();
        assert_eq!(
            pinned_value(&again),
            pinned,
            "a drained backend keeps its pinned clients"
        );
        assert!(pool.sticky_cookie(&req, again.lease.state()).is_none());
        let fresh = pool.key(&request_with_cookie(None), None).as_bytes().to_vec();
        assert_ne!(
            pinned_value(&pool.pick_now(&fresh, &[]).unwrap()),
            pinned,
            "but no new ones"
        );
    }
    state.set_admin(AdminState::Maint);
    let moved = pool.pick_now(pool.key(&req, None).as_bytes(), &[]).unwrap();
    let new_value = pinned_value(&moved);
    assert_ne!(new_value, pinned);
    let set = pool
        .sticky_cookie(&req, moved.lease.state())
        .expect("the cookie is updated");
    assert!(set.starts_with(&format!("lb_sticky={new_value};")), "{set}");
}

#[test]
fn membership_changes_keep_the_live_state_of_backends_that_stay() {
    let pool = Pool::from_config("web", &conf(Algorithm::RoundRobin, 2)).unwrap();
    let held = pool.pick_now(b"", &[]).unwrap();
    let addr = held.lease.state().addr;
    let mut members = config_members(&conf(Algorithm::RoundRobin, 3));
    members.retain(|m| m.addr != addr);
    members.push(Member {
        weight: 3,
        ..Member::new(addr, 1)
    });
    pool.set_members(&members);
    let state = pool.states().get(&addr).unwrap();
    assert!(Arc::ptr_eq(&state, held.lease.state()), "same live state");
    assert_eq!((state.inflight(), state.weight(), state.order()), (1, 3, 2));
    assert_eq!(pool.states().len(), 3);
    // Removed: in-flight requests keep their slot and finish; no new ones.
    members.retain(|m| m.addr != addr);
    pool.set_members(&members);
    assert_eq!(held.lease.state().inflight(), 1);
    for _ in 0..10 {
        assert_ne!(pool.pick_now(b"", &[]).unwrap().lease.state().addr, addr);
    }
    drop(held);
    assert_eq!(state.inflight(), 0);
}

#[test]
fn no_usable_backend_is_none_ready() {
    let pool = Pool::from_config("web", &conf(Algorithm::RoundRobin, 2)).unwrap();
    for state in pool.states().all() {
        state.set_admin(AdminState::Maint);
    }
    assert!(matches!(pool.try_pick(b"", &[]), Err(Shortage::NoneReady)));
    pool.set_members(&[]);
    assert!(matches!(pool.try_pick(b"", &[]), Err(Shortage::NoneReady)));
}

#[test]
fn set_cookie_carries_the_configured_attributes() {
    let mut sticky = StickyConf::default();
    assert_eq!(
        set_cookie(&sticky, "abc"),
        "lb_sticky=abc; Path=/; SameSite=Lax; HttpOnly"
    );
    sticky.ttl = Some(Dur(Duration::from_secs(3600)));
    sticky.secure = true;
    sticky.http_only = false;
    sticky.same_site = Some(SameSite::Strict);
    assert_eq!(
        set_cookie(&sticky, "abc"),
        "lb_sticky=abc; Path=/; Max-Age=3600; SameSite=Strict; Secure"
    );
}

#[test]
fn a_refusal_says_why_no_backend_is_usable() {
    let pool = Pool::from_config("web", &conf(Algorithm::RoundRobin, 3)).unwrap();
    let states = pool.states().all();
    for s in &states {
        s.set_admin(AdminState::Maint);
    }
    assert_eq!(pool.refusal(Refused::NoneReady), "no usable backend: 3 in maint");
    states[0].set_admin(AdminState::Ready);
    states[0].observe_check(false, |_| 1);
    states[1].set_admin(AdminState::Drain);
    assert_eq!(
        pool.refusal(Refused::NoneReady),
        "no usable backend: 1 unhealthy, 1 draining, 1 in maint"
    );
    assert_eq!(
        pool.refusal(Refused::QueueFull),
        "every backend is at max_connections and the queue is full"
    );
}

/// A pool of `n` backends with one slot each and a queue of `queue` places, `timeout` long.
fn queued_pool(n: u8, queue: usize, timeout: Duration) -> Pool {
    let mut conf = conf(Algorithm::RoundRobin, n);
    conf.max_connections = Some(1);
    conf.queue_size = queue;
    conf.queue_timeout = Dur(timeout);
    Pool::from_config("web", &conf).unwrap()
}

/// A request queued on `pool` (this returns once it waits): what it got in the end (the
/// backend's address) and how long it waited.
async fn queue_up(pool: &Arc<Pool>) -> tokio::task::JoinHandle<(Result<std::net::SocketAddr, Refused>, Duration)> {
    let waiter = {
        let pool = Arc::clone(pool);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let picked = pool.pick(b"", &[]).await.map(|p| p.lease.state().addr);
            (picked, start.elapsed())
        })
    };
    while pool.queued() == 0 {
        tokio::task::yield_now().await;
    }
    waiter
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_queues_up_to_its_size_and_times_out_on_the_queue_timeout() {
    let pool = Arc::new(queued_pool(1, 1, Duration::from_secs(3)));
    let held = pool.pick(b"", &[]).await.expect("a free slot");
    let waiter = queue_up(&pool).await;
    assert_eq!(
        pool.pick(b"", &[]).await.map(drop),
        Err(Refused::QueueFull),
        "one place, taken"
    );
    let (got, waited) = waiter.await.unwrap();
    assert_eq!(got, Err(Refused::QueueTimeout));
    assert_eq!(
        waited,
        Duration::from_secs(3),
        "exactly the queue timeout (paused time)"
    );
    assert_eq!(pool.queued(), 0, "the place is given back");
    drop(held);
    let refused: Vec<u64> = pool.stats().refusals().iter().map(|(_, n)| *n).collect();
    assert_eq!(refused, [0, 1, 1], "none ready, queue full, queue timeout");
}

#[tokio::test(start_paused = true)]
async fn a_slot_given_back_goes_to_the_queued_request_at_once() {
    let pool = Arc::new(queued_pool(2, 4, Duration::from_secs(30)));
    let first = pool.pick(b"", &[]).await.expect("a free slot");
    let second = pool.pick(b"", &[]).await.expect("the other slot");
    let freed = second.lease.state().addr;
    let waiter = queue_up(&pool).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(second);
    let (addr, waited) = waiter.await.unwrap();
    assert_eq!(addr, Ok(freed), "a slot once one is freed");
    assert_eq!(
        waited,
        Duration::from_secs(5),
        "woken when the slot came back, not by a poll"
    );
    drop(first);
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_learns_at_once_when_no_backend_is_left() {
    let pool = Arc::new(queued_pool(1, 1, Duration::from_secs(30)));
    let held = pool.pick(b"", &[]).await.expect("a free slot");
    let waiter = queue_up(&pool).await;
    pool.set_members(&[]);
    assert_eq!(waiter.await.unwrap().0, Err(Refused::NoneReady));
    drop(held);
}
