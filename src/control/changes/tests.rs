//! The change rules on their own: registrations, heartbeats, overrides, removals, reconciling.
use super::*;
use crate::config::{Addr, BackendConf};

fn conf() -> Upstream {
    Upstream::new(
        [("127.0.0.1:1", 1), ("127.0.0.1:2", 2)]
            .iter()
            .map(|(a, w)| BackendConf {
                address: Addr(a.parse().unwrap()),
                weight: *w,
                max_connections: None,
                source: Default::default(),
            })
            .collect(),
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn put(weight: Option<u32>, ttl_ms: Option<u64>) -> Change {
    Change::Register(Register {
        weight,
        ttl: ttl_ms.map(|t| Some(Duration::from_millis(t))),
        ..Register::default()
    })
}

#[test]
fn registering_is_idempotent_and_a_repeat_with_a_ttl_is_a_heartbeat() {
    let (c, mut pc) = (conf(), PoolChanges::default());
    let a = addr("127.0.0.1:3");
    assert_eq!(apply(&mut pc, &c, a, &put(None, None), 0), Ok(Effect::Created));
    assert_eq!(
        apply(&mut pc, &c, a, &put(None, None), 5),
        Ok(Effect::Renewed),
        "nothing changed"
    );
    assert_eq!(pc.registered.len(), 1);
    assert_eq!(apply(&mut pc, &c, a, &put(None, Some(1000)), 10), Ok(Effect::Changed));
    assert_eq!(pc.registered[0].expires_at_ms, Some(1010));
    assert_eq!(apply(&mut pc, &c, a, &put(None, Some(1000)), 500), Ok(Effect::Renewed));
    assert_eq!(pc.registered[0].expires_at_ms, Some(1500));
    // A heartbeat keeps what an operator set.
    let drain = Change::Update(Update {
        state: Some(AdminState::Drain),
        weight: Some(3),
    });
    assert_eq!(apply(&mut pc, &c, a, &drain, 600), Ok(Effect::Changed));
    assert_eq!(apply(&mut pc, &c, a, &put(None, Some(1000)), 700), Ok(Effect::Renewed));
    let m = members(&c, Some(&pc));
    assert_eq!(
        (m[2].addr, m[2].weight, m[2].state, m[2].source),
        (a, 3, AdminState::Drain, Source::Api)
    );
}

#[test]
fn file_backends_take_overrides_and_removals_but_no_ttl() {
    let (c, mut pc) = (conf(), PoolChanges::default());
    let b = addr("127.0.0.1:2");
    assert_eq!(
        apply(&mut pc, &c, b, &put(None, Some(1000)), 0).unwrap_err().status,
        409
    );
    let maint = Change::Update(Update {
        state: Some(AdminState::Maint),
        weight: None,
    });
    apply(&mut pc, &c, b, &maint, 0).unwrap();
    assert_eq!(members(&c, Some(&pc))[1].state, AdminState::Maint);
    apply(
        &mut pc,
        &c,
        b,
        &Change::Update(Update {
            state: Some(AdminState::Ready),
            weight: Some(2),
        }),
        0,
    )
    .unwrap();
    assert!(pc.is_empty(), "back to the file's values: nothing kept");
    assert_eq!(apply(&mut pc, &c, b, &Change::Remove, 0), Ok(Effect::Removed));
    assert_eq!(members(&c, Some(&pc)).len(), 1);
    assert_eq!(apply(&mut pc, &c, b, &Change::Remove, 0).unwrap_err().status, 404);
    assert_eq!(apply(&mut pc, &c, b, &put(Some(5), None), 0), Ok(Effect::Created));
    assert_eq!(members(&c, Some(&pc))[1].weight, 5);
    assert_eq!(
        apply(&mut pc, &c, addr("127.0.0.1:9"), &Change::Remove, 0)
            .unwrap_err()
            .status,
        404
    );
}

#[test]
fn reconciling_drops_what_no_longer_fits() {
    let mut config: Config = Config::parse_str(
        "listeners: [{address: 127.0.0.1:80}]\nupstreams:\n  web: {backends: [{address: 127.0.0.1:1}, {address: 127.0.0.1:2}]}\n",
        "t",
    )
    .unwrap();
    let mut kept = Changes::default();
    let pc = kept.pools.entry("web".into()).or_default();
    for (a, exp) in [
        ("127.0.0.1:3", Some(50)),
        ("127.0.0.1:4", Some(500)),
        ("127.0.0.1:5", None),
    ] {
        pc.registered.push(Registered {
            address: addr(a),
            weight: 2,
            state: AdminState::Drain,
            max_connections: None,
            ttl_ms: exp,
            expires_at_ms: exp,
        });
    }
    pc.removed.push(addr("127.0.0.1:7"));
    kept.pools.insert(
        "gone".into(),
        PoolChanges {
            removed: vec![addr("127.0.0.1:1")],
            ..Default::default()
        },
    );
    config.upstreams.get_mut("web").unwrap().backends[1].address = Addr(addr("127.0.0.1:5"));
    let out = reconcile(&config, &kept, 100);
    let web = &out.pools["web"];
    assert_eq!(out.pools.len(), 1);
    assert_eq!(
        web.registered.iter().map(|r| r.address).collect::<Vec<_>>(),
        [addr("127.0.0.1:4")]
    );
    assert_eq!(
        web.overrides,
        [Override {
            address: addr("127.0.0.1:5"),
            weight: Some(2),
            state: Some(AdminState::Drain)
        }]
    );
    assert!(web.removed.is_empty());
}
