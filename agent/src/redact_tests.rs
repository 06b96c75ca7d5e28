use super::*;
use wiretrail_proto::EntryId;

fn entry() -> Entry {
    Entry::new(EntryId::new(0, "n", 0), 0, "n", "http", "pcap")
}

fn run(r: &Redactor, e: &mut Entry) -> RedactionCounts {
    let mut c = RedactionCounts::default();
    r.redact(e, &mut c);
    c
}

fn headers(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn authorization_keeps_the_scheme() {
    let mut e = entry();
    e.request_headers = headers(&[
        ("Authorization", "Bearer eyJhbGciOi.abc.def"),
        ("proxy-authorization", "Basic dXNlcjpwdw=="),
        ("Host", "api"),
    ]);
    e.response_headers = headers(&[("authorization", "opaque-token-without-scheme")]);
    let c = run(&Redactor::default(), &mut e);
    let h = e.request_headers.unwrap();
    assert_eq!(h[0].1, "Bearer [REDACTED]");
    assert_eq!(h[1].1, "Basic [REDACTED]");
    assert_eq!(h[2].1, "api");
    assert_eq!(e.response_headers.unwrap()[0].1, "[REDACTED]");
    assert_eq!(c.authorization, 3);
    assert_eq!(c.total(), 3);
}

#[test]
fn cookies_keep_names_and_attributes() {
    let mut e = entry();
    e.request_headers = headers(&[("Cookie", "session=abc123; theme=dark")]);
    e.response_headers = headers(&[(
        "Set-Cookie",
        "id=a3fWa; Expires=Thu, 21 Oct 2027 07:28:00 GMT; Path=/; HttpOnly",
    )]);
    let c = run(&Redactor::default(), &mut e);
    assert_eq!(
        e.request_headers.unwrap()[0].1,
        "session=[REDACTED]; theme=[REDACTED]"
    );
    assert_eq!(
        e.response_headers.unwrap()[0].1,
        "id=[REDACTED]; Expires=Thu, 21 Oct 2027 07:28:00 GMT; Path=/; HttpOnly"
    );
    assert_eq!(c.cookie, 2);
}

#[test]
fn json_keys_anywhere_in_bodies_keep_the_formatting() {
    let mut e = entry();
    let body = br#"{"user": "ann", "Password" :"hunter2", "nested": {"accessToken": "t0k", "list": [{"client_secret": {"a": [1, 2]}}]},
  "tokens_used": 42, "token_type": null}"#;
    e.request_body = Some(body.to_vec());
    let c = run(&Redactor::default(), &mut e);
    let got = String::from_utf8(e.request_body.unwrap()).unwrap();
    assert_eq!(
        got,
        r#"{"user": "ann", "Password" :"[REDACTED]", "nested": {"accessToken": "[REDACTED]", "list": [{"client_secret": "[REDACTED]"}]},
  "tokens_used": 42, "token_type": null}"#
    );
    assert_eq!(c.json_key, 3);
    serde_json::from_str::<Value>(&got).unwrap();
}

#[test]
fn truncated_json_body_is_still_scanned() {
    let mut e = entry();
    e.response_body = Some(br#"{"a": 1, "token": "abcdef"#.to_vec());
    e.request_body = Some(br#"[{"secret": {"deep": ["x""#.to_vec());
    let c = run(&Redactor::default(), &mut e);
    assert_eq!(
        e.response_body.unwrap(),
        br#"{"a": 1, "token": "[REDACTED]""#
    );
    assert_eq!(e.request_body.unwrap(), br#"[{"secret": "[REDACTED]""#);
    assert_eq!(c.json_key, 2);
}

#[test]
fn detail_json_stays_valid() {
    let mut e = entry();
    e.request = Some(
        serde_json::json!({"target": "/login?user=a&token=xyz#frag", "variables": {"password": "p", "card": 4111111111111111u64}})
            .to_string(),
    );
    e.response = Some(r#"{"version":"HTTP/1.1"}"#.into());
    let c = run(&Redactor::default(), &mut e);
    let d: Value = serde_json::from_str(e.request.as_deref().unwrap()).unwrap();
    assert_eq!(d["target"], "/login?user=a&token=[REDACTED]#frag");
    assert_eq!(d["variables"]["password"], MARKER);
    assert_eq!(d["variables"]["card"], MARKER);
    assert_eq!(e.response.as_deref(), Some(r#"{"version":"HTTP/1.1"}"#));
    assert_eq!((c.query_param, c.json_key, c.card_number), (1, 1, 1));
}

#[test]
fn query_strings_and_form_bodies() {
    let mut e = entry();
    e.path = Some("/cb?code=1&access_token=abc.def&state=x".into());
    e.request_headers = headers(&[
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("Referer", "https://x/y?password=p1"),
    ]);
    e.request_body = Some(b"username=ann&password=hunter2&remember=1".to_vec());
    let c = run(&Redactor::default(), &mut e);
    assert_eq!(
        e.path.as_deref(),
        Some("/cb?code=1&access_token=[REDACTED]&state=x")
    );
    let h = e.request_headers.unwrap();
    assert_eq!(h[0].1, "application/x-www-form-urlencoded; charset=utf-8");
    assert_eq!(h[1].1, "https://x/y?password=[REDACTED]");
    assert_eq!(
        e.request_body.unwrap(),
        b"username=ann&password=[REDACTED]&remember=1"
    );
    assert_eq!(c.query_param, 3);
}

#[test]
fn card_numbers_need_luhn_and_a_network_prefix() {
    let mut e = entry();
    // Visa test number (valid), one digit changed (invalid), an epoch-µs timestamp (Luhn
    // may pass, first digit 1), Amex with spaces, Mastercard with dashes, a 20-digit id.
    let body = "a 4111111111111111 b 4111111111111112 c 1795576364270982 d 3782 822463 10005 e 5555-5555-5555-4444 f 41111111111111111111 g x4111111111111111";
    e.response_body = Some(body.as_bytes().to_vec());
    let c = run(&Redactor::default(), &mut e);
    assert_eq!(
        String::from_utf8(e.response_body.unwrap()).unwrap(),
        "a [REDACTED] b 4111111111111112 c 1795576364270982 d [REDACTED] e [REDACTED] f 41111111111111111111 g x4111111111111111"
    );
    assert_eq!(c.card_number, 3);
}

#[test]
fn card_number_as_a_bare_json_number_becomes_a_string() {
    let mut e = entry();
    e.request_body = Some(br#"{"pan": 4111111111111111, "n": [5555555555554444]}"#.to_vec());
    run(&Redactor::default(), &mut e);
    let b = e.request_body.unwrap();
    assert_eq!(b, br#"{"pan": "[REDACTED]", "n": ["[REDACTED]"]}"#);
}

#[test]
fn custom_headers_keys_and_regexes() {
    let r = Redactor::default()
        .with_header("X-Api-Key")
        .with_json_key("ssn")
        .unwrap()
        .with_regex(r"sk_live_[0-9a-z]+")
        .unwrap();
    let mut e = entry();
    e.request_headers = headers(&[("x-api-key", "k-123"), ("X-Note", "key sk_live_abc9 here")]);
    e.request_body =
        Some(br#"{"SSN": "123-45-6789", "msg": "sk_live_zz and sk_live_yy"}"#.to_vec());
    let c = run(&r, &mut e);
    let h = e.request_headers.unwrap();
    assert_eq!(h[0].1, MARKER);
    assert_eq!(h[1].1, "key [REDACTED] here");
    assert_eq!(
        e.request_body.unwrap(),
        br#"{"SSN": "[REDACTED]", "msg": "[REDACTED] and [REDACTED]"}"#
    );
    assert_eq!((c.header, c.json_key, c.regex), (1, 1, 3));
}

#[test]
fn bad_rules_are_errors() {
    assert!(Redactor::default().with_regex("(unclosed").is_err());
    assert!(Redactor::default().with_regex("a*").is_err());
    assert!(Redactor::default().with_json_key("--").is_err());
}

#[test]
fn off_changes_nothing() {
    let mut e = entry();
    e.request_headers = headers(&[("Authorization", "Bearer x")]);
    e.request_body = Some(br#"{"password": "p"}"#.to_vec());
    let before = e.clone();
    let c = run(&Redactor::off(), &mut e);
    assert_eq!(e, before);
    assert_eq!(c.total(), 0);
}

#[test]
fn second_pass_changes_nothing() {
    let mut e = entry();
    e.request_headers = headers(&[("Authorization", "Bearer x"), ("Cookie", "a=b")]);
    e.path = Some("/?token=1".into());
    e.request_body = Some(br#"{"password": "p", "pan": "4111 1111 1111 1111"}"#.to_vec());
    let r = Redactor::default();
    run(&r, &mut e);
    let once = e.clone();
    let c = run(&r, &mut e);
    assert_eq!(e, once);
    assert_eq!(c.json_key + c.query_param + c.card_number + c.cookie, 0);
}

#[test]
fn word_matching() {
    assert_eq!(words(b"accessToken"), ["access", "token"]);
    assert_eq!(words(b"X-API-Key"), ["x", "api", "key"]);
    assert_eq!(words(b"client_secret2"), ["client", "secret2"]);
    let r = Redactor::off();
    assert!(!r.key_matches(b"password"));
    let r = Redactor::default().with_json_key("api_key").unwrap();
    for k in [
        "password",
        "PASSWORD",
        "user.password",
        "refresh_token",
        "apiKey",
        "x-api-key",
        "apikey",
    ] {
        assert!(r.key_matches(k.as_bytes()), "{k}");
    }
    for k in ["tokens", "passwords_count", "key", "api", "secretary"] {
        assert!(!r.key_matches(k.as_bytes()), "{k}");
    }
}

#[test]
fn redis_auth_passwords() {
    let mut e = Entry::new(EntryId::new(0, "n", 0), 0, "n", "redis", "pcap");
    e.method = Some("AUTH".into());
    e.path = Some("default".into());
    e.request = Some(r#"{"command":"AUTH","args":["default","s3cr3t"],"argc":3}"#.into());
    let mut h = e.clone();
    h.method = Some("HELLO".into());
    h.path = Some("3".into());
    h.request = Some(
        r#"{"command":"HELLO","args":["3","AUTH","default","s3cr3t","SETNAME","x"],"argc":7}"#
            .into(),
    );
    let r = Redactor::default();
    let c = run(&r, &mut e);
    assert_eq!(e.path.as_deref(), Some(MARKER));
    assert!(!e.request.as_deref().unwrap().contains("s3cr3t"));
    assert_eq!(c.authorization, 1);
    let c = run(&r, &mut h);
    assert_eq!(h.path.as_deref(), Some("3"));
    let d: Value = serde_json::from_str(h.request.as_deref().unwrap()).unwrap();
    assert_eq!(
        d["args"],
        serde_json::json!(["3", "AUTH", "default", MARKER, "SETNAME", "x"])
    );
    assert_eq!(c.authorization, 1);
    assert_eq!(run(&r, &mut h).total(), 0);
}
