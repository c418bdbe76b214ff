use super::*;

#[test]
fn templates_split_text_and_variables_and_refuse_unknown_ones() {
    let t = Template::parse("for=$client_ip; proto=$scheme $$5").unwrap();
    assert_eq!(
        t.parts,
        vec![
            Part::Text("for=".into()),
            Part::Var(Var::ClientIp),
            Part::Text("; proto=".into()),
            Part::Var(Var::Scheme),
            Part::Text(" $5".into()),
        ]
    );
    assert_eq!(Template::parse("plain").unwrap().literal(), Some("plain"));
    let e = Template::parse("x $nope").unwrap_err();
    assert!(
        e.starts_with("$nope is not a variable lb knows (it knows $client_ip, $host"),
        "{e}"
    );
    assert!(Template::parse("a\u{7f}b").is_err(), "a control character");
    assert!(Template::parse("$").is_err(), "a bare $ names no variable");
}

#[test]
fn patterns_and_names_explain_what_is_wrong() {
    let e = Pattern::parse("^/v[0-9+$").unwrap_err();
    assert!(e.starts_with("\"^/v[0-9+$\" is not a valid regular expression"), "{e}");
    assert!(Pattern::parse("^/v[0-9]+/users/[0-9]+$").is_ok());
    assert!(parse_name("X Bad").is_err());
}

#[test]
fn value_matches_read_scalars_regexes_and_presence() {
    let parse = |y: &str| serde_yaml::from_str::<Ordered<FieldName, ValueMatch>>(y);
    let m = parse("{X-Canary: 1, X-Env: {regex: \"^(dev|qa)$\"}, X-Debug: {present: true}}").unwrap();
    assert_eq!(m.0.len(), 3);
    assert_eq!(m.0[0].1, ValueMatch::Exact("1".into()));
    assert!(matches!(&m.0[1].1, ValueMatch::Regex(p) if p.0.is_match("qa")));
    assert_eq!(m.0[2].1, ValueMatch::Present(true));
    let e = parse("{X-A: {regexp: x}}").unwrap_err().to_string();
    assert!(
        e.contains("unknown field `regexp`, expected `regex` or `present`"),
        "{e}"
    );
    let e = parse("{X-A: {regex: \"(\"}}").unwrap_err().to_string();
    assert!(e.contains("is not a valid regular expression"), "{e}");
}
