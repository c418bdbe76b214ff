//! DNS discovery against a real DNS server on a loopback port (hickory-server, in the test
//! process, its zone changed while lb runs): a new A record gets traffic within a refresh, a
//! removed one leaves the pool, a resolver outage keeps the last good set with no client error;
//! SRV records give ports and weights, lowest priority only.

mod common;

use common::admin::Api;
use common::{eventually, free_addr, tally, Demo, Lb, PATIENCE};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::rdata::{A, SOA, SRV};
use hickory_resolver::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const TTL: u32 = 1;

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("a valid name")
}

/// An authoritative server for `lb.test.` on UDP and TCP of one loopback port.
struct Dns {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    server: Server<Catalog>,
}

impl Dns {
    async fn start(records: Vec<Record>) -> Dns {
        let origin = name("lb.test.");
        let mut zone =
            InMemoryZoneHandler::<TokioRuntimeProvider>::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(name("ns.lb.test."), name("admin.lb.test."), 1, 60, 60, 60, TTL);
        zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
        for record in records {
            zone.upsert_mut(record, 1);
        }
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone() as Arc<dyn ZoneHandler>]);
        let mut server = Server::new(catalog);
        // UDP and TCP on one port number: the TCP side may be taken, then try another.
        let mut bound = None;
        for _ in 0..50 {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                bound = Some((udp, tcp, addr));
                break;
            }
        }
        let (udp, tcp, addr) = bound.expect("no loopback port free for both UDP and TCP");
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 16);
        Dns { addr, zone, server }
    }

    /// Replaces the A records of `host` by `ips`.
    async fn set_a(&self, host: &str, ips: &[Ipv4Addr]) {
        let mut set = RecordSet::new(name(host), RecordType::A, 2);
        for ip in ips {
            set.insert(Record::from_rdata(name(host), TTL, RData::A(A(*ip))), 2);
        }
        let key = RrKey::new(LowerName::new(&name(host)), RecordType::A);
        self.zone.records_mut().await.insert(key, Arc::new(set));
    }
}

fn a(host: &str, ip: Ipv4Addr) -> Record {
    Record::from_rdata(name(host), TTL, RData::A(A(ip)))
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name("_http._tcp.lb.test."),
        TTL,
        RData::SRV(SRV::new(priority, weight, port, name(target))),
    )
}

/// The addresses of pool `pool` with their source and weight, sorted.
async fn members(api: &Api, pool: &str) -> Vec<(String, String, u64)> {
    let json = api.pool(pool).await;
    let mut out: Vec<(String, String, u64)> = json["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let text = |k: &str| b[k].as_str().unwrap_or_default().to_string();
            (text("address"), text("source"), b["weight"].as_u64().unwrap_or(0))
        })
        .collect();
    out.sort();
    out
}

/// Backends on 127.0.0.2, .3 and .4, all on one port (A records carry no port).
fn backends_on_one_port() -> (u16, Vec<Demo>) {
    for _ in 0..20 {
        let port = free_addr().port();
        let demos: Option<Vec<Demo>> = (2..=4)
            .map(|i| Demo::start_at(&format!("n{i}"), SocketAddr::from(([127, 0, 0, i], port))))
            .collect();
        if let Some(demos) = demos {
            return (port, demos);
        }
    }
    panic!("no port free on 127.0.0.2-4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_are_followed_and_an_outage_keeps_the_last_good_set() {
    let (port, _demos) = backends_on_one_port();
    let ip = |i: u8| Ipv4Addr::new(127, 0, 0, i);
    let dns = Dns::start(vec![a("web.lb.test.", ip(2)), a("web.lb.test.", ip(3))]).await;
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"}}
upstreams:
  web:
    discovery: {{dns: {{name: web.lb.test, port: {port}, refresh: 1s, resolver: \"{}\"}}}}
",
        dns.addr
    ));
    let api = Api::new(lb.admin());
    let want = |ips: &[u8]| -> Vec<(String, String, u64)> {
        ips.iter()
            .map(|i| (format!("127.0.0.{i}:{port}"), "dns".to_string(), 1))
            .collect()
    };
    let has =
        async |ips: &[u8], limit: Duration| eventually(limit, async || members(&api, "web").await == want(ips)).await;
    assert!(
        has(&[2, 3], PATIENCE).await,
        "{:?}\n{}",
        members(&api, "web").await,
        lb.log()
    );
    let counts = tally(&lb, "/", 30).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["n2", "n3"], "{counts:?}");

    // A new record gets traffic within a refresh (1 s) plus the records' TTL (1 s).
    dns.set_a("web.lb.test.", &[ip(2), ip(3), ip(4)]).await;
    assert!(
        has(&[2, 3, 4], Duration::from_secs(3)).await,
        "{:?}",
        members(&api, "web").await
    );
    let counts = tally(&lb, "/", 30).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["n2", "n3", "n4"], "{counts:?}");

    // A removed record leaves the pool.
    dns.set_a("web.lb.test.", &[ip(3), ip(4)]).await;
    assert!(
        has(&[3, 4], Duration::from_secs(3)).await,
        "{:?}",
        members(&api, "web").await
    );
    let counts = tally(&lb, "/", 30).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["n3", "n4"], "{counts:?}");

    // An empty answer looks like an outage: counted, nothing changes.
    let before = api.discovery_errors("web").await;
    dns.set_a("web.lb.test.", &[]).await;
    assert!(
        eventually(PATIENCE, async || api.discovery_errors("web").await > before).await,
        "{}",
        lb.log()
    );
    assert_eq!(members(&api, "web").await, want(&[3, 4]));

    // The DNS server goes away: the last good set keeps serving, every request answered.
    let mut server = dns.server;
    let _ = server.shutdown_gracefully().await;
    let before = api.discovery_errors("web").await;
    assert!(
        eventually(PATIENCE, async || api.discovery_errors("web").await > before).await,
        "{}",
        lb.log()
    );
    let counts = tally(&lb, "/", 30).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["n3", "n4"], "{counts:?}");
    assert_eq!(members(&api, "web").await, want(&[3, 4]));
    assert!(lb.log().contains("keeps its last good set"), "{}", lb.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_and_weights_lowest_priority_first() {
    let (a_demo, b_demo, spare) = (Demo::start("a"), Demo::start("b"), Demo::start("spare"));
    let local = Ipv4Addr::LOCALHOST;
    let dns = Dns::start(vec![
        a("a.lb.test.", local),
        a("b.lb.test.", local),
        a("spare.lb.test.", local),
        srv(10, 3, a_demo.addr.port(), "a.lb.test."),
        srv(10, 1, b_demo.addr.port(), "b.lb.test."),
        srv(20, 5, spare.addr.port(), "spare.lb.test."),
    ])
    .await;
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"}}
upstreams:
  web:
    algorithm: weighted_round_robin
    discovery: {{dns: {{name: _http._tcp.lb.test, refresh: 1s, resolver: \"{}\"}}}}
",
        dns.addr
    ));
    let api = Api::new(lb.admin());
    let mut want = vec![
        (a_demo.addr.to_string(), "dns".to_string(), 3),
        (b_demo.addr.to_string(), "dns".to_string(), 1),
    ];
    want.sort();
    let ok = eventually(PATIENCE, async || members(&api, "web").await == want).await;
    assert!(ok, "{:?}\n{}", members(&api, "web").await, lb.log());
    let counts = tally(&lb, "/", 40).await;
    assert_eq!(counts.get("a"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
    drop(dns);
}
