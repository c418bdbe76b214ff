//! Micro-benchmarks of the per-request code lb owns: picking a backend (every algorithm, with
//! the slot taken and given back) at 3, 100 and 1000 backends, route matching and hash-key
//! extraction. `cargo bench --bench per_request`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use lb::config::{Algorithm, BackendConf, HashKey, Upstream};
use lb::request::pool::Pool;
use lb::request::route::Router;
use pingora_http::RequestHeader;
use std::net::IpAddr;

fn pool(algorithm: Algorithm, n: usize) -> Pool {
    let backends = (0..n)
        .map(|i| BackendConf {
            // Never connected to (no health checks, no requests): loopback all the same.
            address: lb::config::Addr(format!("127.0.{}.{}:80", (i / 256) % 256, i % 256).parse().unwrap()),
            weight: 1,
            max_connections: None,
            source: Default::default(),
        })
        .collect();
    let mut conf = Upstream::new(backends);
    conf.algorithm = algorithm;
    conf.hash_key = Some(HashKey::Uri);
    Pool::from_config("bench", &conf).unwrap()
}

fn request() -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/api/v1/items/12345?sort=asc&page=2", None).unwrap();
    req.append_header("host", "shop.example.com").unwrap();
    req.append_header("user-agent", "bench/1.0").unwrap();
    req.append_header("x-user", "user-4711").unwrap();
    req.append_header("cookie", "theme=dark; lb_sticky=0123456789abcdef; sid=abc")
        .unwrap();
    req
}

fn selection(c: &mut Criterion) {
    let req = request();
    let client: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
    let algorithms = [
        Algorithm::RoundRobin,
        Algorithm::Random,
        Algorithm::Hash,
        Algorithm::Consistent,
        Algorithm::LeastConnections,
        Algorithm::PowerOfTwo,
        Algorithm::LeastTime,
        Algorithm::Sticky,
        Algorithm::First,
    ];
    let mut group = c.benchmark_group("pick");
    for algorithm in algorithms {
        for n in [3, 100, 1000] {
            let pool = pool(algorithm, n);
            group.bench_with_input(BenchmarkId::new(algorithm.name(), n), &n, |b, _| {
                b.iter(|| {
                    let key = pool.key(black_box(&req), client);
                    let picked = pool.pick_now(key.as_bytes(), &[]);
                    black_box(picked.map(|p| p.backend.weight))
                })
            });
        }
    }
    group.finish();
}

fn routing(c: &mut Criterion) {
    let mut router = Router::new();
    for i in 0..9 {
        router.push(Some(&format!("svc{i}.example.com")), Some("/api/"), i);
    }
    router.push(Some("*.example.com"), Some("/api/v1/"), 9);
    router.push(None, None, 10);
    let mut req = RequestHeader::build("GET", b"/api/v1/items/1", None).expect("request");
    req.insert_header("host", "shop.example.com:8080").expect("host");
    c.bench_function("route/11 rules, 10th matches", |b| {
        b.iter(|| router.find(black_box(&req)))
    });
}

fn keys(c: &mut Criterion) {
    let req = request();
    let client: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
    let sources = [
        ("uri", HashKey::Uri),
        ("path", HashKey::Path),
        ("source_ip", HashKey::SourceIp),
        ("header", HashKey::Header(http::HeaderName::from_static("x-user"))),
        ("cookie", HashKey::Cookie("sid".into())),
    ];
    let mut group = c.benchmark_group("key");
    for (name, source) in sources {
        group.bench_function(name, |b| {
            b.iter(|| {
                lb::request::key::extract(black_box(&source), black_box(&req), client).map(|k| k.as_bytes().len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, selection, routing, keys);
criterion_main!(benches);
