use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};

use super::http::{token_of, ws_protocol};
use super::tokens::{generate_token, hash_token, PrincipalsFile, TokenStore, TOKEN_PREFIX};
use super::*;

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wt-auth-unit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.join("auth").join("tokens.json")
}

#[test]
fn tokens_are_random_prefixed_and_only_their_hash_is_stored() {
    let a = generate_token().unwrap();
    let b = generate_token().unwrap();
    assert_ne!(a, b);
    assert!(a.starts_with(TOKEN_PREFIX), "{a}");
    // 32 bytes in base64url without padding; header- and subprotocol-safe characters.
    assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    // SHA-256 of "abc", the FIPS 180-2 test vector.
    let h = hash_token("abc");
    assert_eq!(h[..4], [0xba, 0x78, 0x16, 0xbf]);

    let path = temp("store");
    let mut f = PrincipalsFile::default();
    let t = f
        .add("alice", Role::Viewer, Scope::parse("shop,pay").unwrap())
        .unwrap();
    f.write_atomic(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(&t),
        "the file holds the token itself: {text}"
    );
    assert!(text.contains(&hex(&hash_token(&t))), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let back = PrincipalsFile::read(&path).unwrap();
    assert_eq!(back, f);
    assert!(
        f.add("alice", Role::Admin, Scope::All).is_err(),
        "names are unique"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn parsing_refuses_bad_files_without_repeating_their_values() {
    let secret = "wt_thisIsASecretPastedIntoTheWrongField";
    let h = "a".repeat(64);
    let bad = [
        format!(
            r#"{{"principals": [{{"name": "a", "role": "{secret}", "namespaces": "*", "token_sha256": "{h}"}}]}}"#
        ),
        format!(
            r#"{{"principals": [{{"name": "a", "role": "viewer", "namespaces": "*", "token_sha256": "{secret}"}}]}}"#
        ),
        format!(
            r#"{{"principals": [{{"name": "a", "role": "viewer", "namespaces": ["{secret}"], "token_sha256": "{h}"}}]}}"#
        ),
        format!(
            r#"{{"principals": [{{"name": "{secret}!", "role": "viewer", "namespaces": "*", "token_sha256": "{h}"}}]}}"#
        ),
        format!(
            r#"{{"principals": [{{"name": "a", "role": "viewer", "namespaces": [], "token_sha256": "{h}"}}]}}"#
        ),
        format!(
            r#"{{"principals": [{{"name": "a", "role": "viewer", "namespaces": "*", "token_sha256": "{h}"}}, {{"name": "a", "role": "admin", "namespaces": "*", "token_sha256": "{}"}}]}}"#,
            "b".repeat(64)
        ),
        format!(
            r#"{{"principals": [{{"name": "a", "role": "viewer", "namespaces": "*", "token_sha256": "{h}"}}, {{"name": "b", "role": "admin", "namespaces": "*", "token_sha256": "{h}"}}]}}"#
        ),
        r#"{"version": 2, "principals": []}"#.to_string(),
        r#"{"principals": [{"name": "a", "role": "viewer", "#.to_string(),
        secret.to_string(),
    ];
    for b in &bad {
        let e = PrincipalsFile::parse(b.as_bytes()).expect_err(b);
        assert!(!e.contains("thisIsASecret"), "{e}");
    }
    let ok = format!(
        r#"{{"version": 1, "principals": [{{"name": "ci@example", "role": "agent", "namespaces": ["a", "b-2"], "token_sha256": "{}"}}]}}"#,
        "AB".repeat(32)
    );
    let f = PrincipalsFile::parse(ok.as_bytes()).unwrap();
    assert_eq!(f.principals[0].principal.role, Role::Agent);
    assert_eq!(f.principals[0].principal.namespaces.to_string(), "a,b-2");
    assert_eq!(f.principals[0].token_sha256, [0xab; 32]);
}

#[test]
fn scopes_roles_and_bearer_headers() {
    assert_eq!(Scope::parse("*").unwrap(), Scope::All);
    assert!(Scope::parse("shop, pay").unwrap().allows("pay"));
    assert!(!Scope::parse("shop").unwrap().allows("pay"));
    assert!(Scope::parse("").is_err());
    assert!(Scope::parse("Shop").is_err());
    assert!(Role::Viewer.may(Access::Read) && !Role::Viewer.may(Access::Admin));
    assert!(!Role::Viewer.may(Access::Ship) && !Role::Agent.may(Access::Read));
    assert!(Role::Admin.may(Access::Admin) && Role::Admin.may(Access::Ship));
    assert_eq!(bearer("Bearer abc"), Ok("abc"));
    assert_eq!(bearer("bearer  abc "), Ok("abc"));
    assert_eq!(bearer("Basic abc"), Err(Denial::Malformed));
    assert_eq!(bearer("Bearer"), Err(Denial::Malformed));

    let mut h = HeaderMap::new();
    assert_eq!(token_of(&h, true), Ok(None));
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("wiretrail, bearer.wt_x"),
    );
    assert_eq!(token_of(&h, true), Ok(Some("wt_x")));
    assert_eq!(
        token_of(&h, false),
        Ok(None),
        "only WebSocket routes read subprotocols"
    );
    assert_eq!(ws_protocol(&h).as_deref(), Some("wiretrail"));
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("bearer.wt_x"),
    );
    assert_eq!(ws_protocol(&h).as_deref(), Some("bearer.wt_x"));
    h.insert("authorization", HeaderValue::from_static("Bearer wt_y"));
    assert_eq!(token_of(&h, true), Ok(Some("wt_y")), "the header wins");
}

#[test]
fn the_store_reloads_changes_and_keeps_the_last_good_file() {
    let path = temp("reload");
    let mut f = PrincipalsFile::default();
    let alice = f.add("alice", Role::Viewer, Scope::All).unwrap();
    f.write_atomic(&path).unwrap();
    let store = TokenStore::open(&path, Duration::ZERO).unwrap();
    assert_eq!(store.lookup(&hash_token(&alice)).unwrap().name, "alice");
    assert!(store.lookup(&hash_token("wt_nope")).is_none());

    // A new principal is in force at the next check, without a restart.
    let bob = f.add("bob", Role::Admin, Scope::All).unwrap();
    f.write_atomic(&path).unwrap();
    assert_eq!(store.lookup(&hash_token(&bob)).unwrap().role, Role::Admin);

    // A broken file is refused once; the last good set stays.
    std::fs::write(&path, b"{\"principals\": [").unwrap();
    assert!(!store.reload());
    assert_eq!(store.reload_errors(), 1);
    assert!(!store.reload());
    assert_eq!(
        store.reload_errors(),
        1,
        "the same bad version is reported once"
    );
    assert!(store.lookup(&hash_token(&bob)).is_some());
    // So does a deleted one.
    std::fs::remove_file(&path).unwrap();
    assert!(store.lookup(&hash_token(&alice)).is_some());

    // Revoking takes effect at the next check.
    f.revoke("alice").unwrap();
    assert!(f.revoke("alice").is_err());
    f.write_atomic(&path).unwrap();
    assert!(store.lookup(&hash_token(&alice)).is_none());
    assert!(store.lookup(&hash_token(&bob)).is_some());
    assert_eq!(store.len(), 1);

    // Checks are rate-limited: with a long interval, a change waits for the next check.
    let slow = TokenStore::open(&path, Duration::from_secs(3600)).unwrap();
    let carol = f.add("carol", Role::Viewer, Scope::All).unwrap();
    f.write_atomic(&path).unwrap();
    assert!(slow.lookup(&hash_token(&carol)).is_none());
    assert!(slow.reload());
    assert!(slow.lookup(&hash_token(&carol)).is_some());
    let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
}

#[test]
fn the_authenticator_checks_roles_and_counts_refusals() {
    let path = temp("authn");
    let mut f = PrincipalsFile::default();
    let viewer = f.add("v", Role::Viewer, Scope::All).unwrap();
    let agent = f.add("a", Role::Agent, Scope::All).unwrap();
    f.write_atomic(&path).unwrap();
    let config = AuthConfig {
        mode: AuthMode::Tokens,
        tokens_file: path.clone(),
        metrics_auth: false,
        reload_interval: Duration::ZERO,
    };
    let auth = Authenticator::new(&config).unwrap();
    let ok = |t: &str, a: Access| auth.check(Ok(Some(t)), a, Port::Http);
    assert_eq!(ok(&viewer, Access::Read).unwrap().name, "v");
    assert!(matches!(
        ok(&viewer, Access::Admin),
        Err(Denial::Forbidden { .. })
    ));
    assert!(ok(&agent, Access::Read).is_err());
    assert_eq!(ok(&agent, Access::Ship).unwrap().name, "a");
    assert_eq!(ok("wt_wrong", Access::Read), Err(Denial::Invalid));
    assert_eq!(
        auth.check(Ok(None), Access::Read, Port::Http),
        Err(Denial::Missing)
    );
    assert!(auth.check(Ok(None), Access::Open, Port::Http).is_ok());
    assert!(auth.check(Ok(None), Access::Metrics, Port::Http).is_ok());
    assert_eq!(auth.counters.rejected(Port::Http, false), 2);
    assert_eq!(auth.counters.rejected(Port::Http, true), 2);
    // A token for this process only.
    let own = auth.internal_token("up-capture", Role::Agent).unwrap();
    assert_eq!(ok(&own, Access::Ship).unwrap().name, "up-capture");
    let msg = Denial::Forbidden {
        principal: "v".into(),
        role: Role::Viewer,
        needs: "admin",
    }
    .message("DELETE /api/v1/snapshots/x");
    assert!(msg.contains("v (role viewer) may not DELETE"), "{msg}");

    let metrics = AuthConfig {
        metrics_auth: true,
        ..config.clone()
    };
    let auth = Authenticator::new(&metrics).unwrap();
    assert_eq!(
        auth.check(Ok(None), Access::Metrics, Port::Http),
        Err(Denial::Missing)
    );
    for mode in [AuthMode::Jwt, AuthMode::Kubernetes] {
        let Err(e) = Authenticator::new(&AuthConfig {
            mode,
            ..config.clone()
        }) else {
            panic!("{mode} must not start");
        };
        assert!(
            e.to_string().contains("not supported in this build yet"),
            "{e}"
        );
    }
    let missing = AuthConfig {
        tokens_file: path.with_file_name("none.json"),
        ..config
    };
    let Err(e) = Authenticator::new(&missing) else {
        panic!("a missing file must not start");
    };
    assert!(e.to_string().contains("wiretrail auth token add"), "{e}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
}
