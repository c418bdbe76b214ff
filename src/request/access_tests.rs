use super::*;
use pingora_http::RequestHeader;

fn asked<'a>(req: &'a RequestHeader, client: &str) -> Asked<'a> {
    Asked {
        req,
        tls: false,
        client: client.parse().ok(),
        now_ns: 0,
    }
}

fn nets(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|n| Cidr::parse(n).unwrap()).collect()
}

#[test]
fn deny_wins_then_allow_refuses_the_rest() {
    let guard = Access {
        allow: nets(&["10.0.0.0/8", "192.168.0.0/16"]),
        deny: nets(&["10.9.0.0/16"]),
    };
    let req = RequestHeader::build("GET", b"/", None).unwrap();
    assert!(guard.check(&asked(&req, "10.1.2.3")).is_none());
    assert!(guard.check(&asked(&req, "::ffff:192.168.1.1")).is_none(), "mapped IPv4");
    for refused in ["10.9.0.1", "172.16.0.1", "2001:db8::1"] {
        let answer = guard.check(&asked(&req, refused));
        assert!(matches!(answer, Some(Answer::Text { status: 403, .. })), "{refused}");
    }
    let deny_only = Access {
        allow: Vec::new(),
        deny: nets(&["192.0.2.0/24"]),
    };
    assert!(deny_only.check(&asked(&req, "198.51.100.1")).is_none());
    assert!(deny_only.check(&asked(&req, "192.0.2.9")).is_some());
}

#[test]
fn basic_auth_admits_the_right_password_and_remembers_the_outcome() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let guard = BasicAuth::new("ops", vec![("alice".into(), hash)]);
    let with = |value: Option<&str>| {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(v) = value {
            req.insert_header("authorization", v).unwrap();
        }
        guard.check(&asked(&req, "127.0.0.1"))
    };
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let challenge = Some(Answer::Unauthorized {
        challenge: Arc::from("Basic realm=\"ops\", charset=\"UTF-8\""),
    });
    assert_eq!(with(None), challenge);
    assert_eq!(with(Some(&format!("Basic {}", b64("alice:s3cret")))), None);
    assert_eq!(
        with(Some(&format!("Basic {}", b64("alice:s3cret")))),
        None,
        "remembered"
    );
    assert_eq!(with(Some(&format!("Basic {}", b64("alice:wrong")))), challenge);
    assert_eq!(with(Some(&format!("Basic {}", b64("bob:s3cret")))), challenge);
    assert_eq!(with(Some("Basic !!!")), challenge);
    assert_eq!(with(Some("Bearer x")), challenge);
}
