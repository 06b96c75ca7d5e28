//! TLS handshakes against tshark, per TCP connection (keyed by the client port): every
//! ClientHello's SNI, offered ALPN, supported_versions, cipher suites and key share groups, and
//! every ServerHello's selected version, cipher, ALPN, group, HelloRetryRequest flag and
//! resumption must equal ours. tshark ran with the keylog, so its truth also holds decrypted
//! HTTP rows and the encrypted TLS 1.3 handshake messages; only hello rows are compared, and
//! the decrypted messages serve one purpose: a connection whose server sent no Certificate
//! was resumed (PSK in TLS 1.3, abbreviated handshake in TLS 1.2).

mod support;

use std::collections::BTreeMap;

use support::{detail, run, run_with_keylog, skip, split, strings, truth, Conformance};
use wiretrail_proto::Entry;

fn hex(v: &str) -> u16 {
    u16::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

fn version(v: &str) -> String {
    match hex(v) {
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        _ => v.to_string(),
    }
}

fn cipher(v: &str) -> String {
    tls_parser::TlsCipherSuite::from_id(hex(v)).map_or_else(|| v.to_string(), |c| c.name.into())
}

fn group(v: &str) -> String {
    match v {
        "23" => "secp256r1",
        "24" => "secp384r1",
        "29" => "x25519",
        "30" => "x448",
        other => other,
    }
    .to_string()
}

type Hello = (
    Option<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
);
type ServerHello = (
    String,
    String,
    Option<String>,
    Option<String>,
    bool,
    Option<bool>,
);

fn conformance(capture: &str) -> Vec<Entry> {
    let (entries, stats) = run(capture, 64 << 10);
    let ours: BTreeMap<u16, &Entry> = entries
        .iter()
        .filter(|e| e.protocol == "tls")
        .map(|e| (e.src.port, e))
        .collect();
    let rows = truth(capture);
    let types = |r: &BTreeMap<String, String>| split(&r["tls.handshake.type"]);

    // Per connection: the client port, whether the server sent a Certificate, and how many
    // ClientHellos there are (two after a HelloRetryRequest).
    let mut client_port: BTreeMap<&str, u16> = BTreeMap::new();
    let mut server_cert: BTreeMap<&str, bool> = BTreeMap::new();
    let mut hellos: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        let t = types(r);
        let stream = r["tcp.stream"].as_str();
        if t.iter().any(|t| t == "1") {
            client_port.insert(stream, r["tcp.srcport"].parse().unwrap());
            *hellos.entry(stream).or_default() += 1;
        }
        if t.iter().any(|t| t == "11")
            && client_port.get(stream) != r["tcp.srcport"].parse().ok().as_ref()
        {
            server_cert.insert(stream, true);
        }
    }

    let mut c = Conformance::new("tls", capture);
    let mut seen_ch: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen_sh: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        let t = types(r);
        let stream = r["tcp.stream"].as_str();
        let Some(&port) = client_port.get(stream) else {
            continue;
        };
        let e = ours.get(&port);
        let (req, resp) = (
            e.map(|e| detail(&e.request)),
            e.map(|e| detail(&e.response)),
        );
        let alert = &r["tls.alert_message.desc"];
        // Alerts before the final ServerHello are plaintext; later ones (close_notify) were
        // encrypted, and only tshark's keylog shows them.
        if !alert.is_empty() && seen_sh.get(stream).copied().unwrap_or(0) < hellos[stream] {
            let want: u64 = alert.parse().unwrap();
            let got = resp.as_ref().and_then(|s| s["alert"]["code"].as_u64());
            c.check(&format!("{capture} port {port} alert"), &want, got.as_ref());
        }
        if t.iter().any(|t| t == "1") {
            let k = seen_ch.entry(stream).or_default();
            let want: Hello = (
                Some(r["tls.handshake.extensions_server_name"].clone()).filter(|s| !s.is_empty()),
                split(&r["tls.handshake.extensions_alpn_str"]),
                split(&r["tls.handshake.extensions.supported_version"])
                    .iter()
                    .map(|v| version(v))
                    .collect(),
                split(&r["tls.handshake.ciphersuite"])
                    .iter()
                    .map(|v| cipher(v))
                    .collect(),
                split(&r["tls.handshake.extensions_key_share_group"])
                    .iter()
                    .map(|v| group(v))
                    .collect(),
            );
            let got: Option<Hello> = e.zip(req.as_ref()).map(|(e, q)| {
                (
                    e.path.clone(),
                    strings(&q["alpn"]),
                    strings(&q["versions"]),
                    strings(&q["ciphers"]),
                    strings(&q[if *k == 0 { "groups" } else { "retry_groups" }]),
                )
            });
            c.check(
                &format!("{capture} port {port} ClientHello #{k}"),
                &want,
                got.as_ref(),
            );
            *k += 1;
        }
        if t.iter().any(|t| t == "2") {
            let k = seen_sh.entry(stream).or_default();
            // A ServerHello followed by another ClientHello is a HelloRetryRequest; every
            // ServerHello of that connection says it had one.
            let retried = hellos.get(stream).copied().unwrap_or(0) > 1;
            let hrr = retried && *k == 0;
            let sel = &r["tls.handshake.extensions_key_share_selected_group"];
            let grp = if sel.is_empty() {
                &r["tls.handshake.extensions_key_share_group"]
            } else {
                sel
            };
            let sv = &r["tls.handshake.extensions.supported_version"];
            // In TLS 1.3 the selected ALPN travels in EncryptedExtensions (type 8), which
            // tshark decrypted with the keylog and reports on the ServerHello's row; it is not
            // in the clear, so we expect none there.
            let alpn = Some(r["tls.handshake.extensions_alpn_str"].clone())
                .filter(|s| !s.is_empty() && !t.iter().any(|t| t == "8"));
            let want: ServerHello = (
                version(if sv.is_empty() {
                    &r["tls.handshake.version"]
                } else {
                    sv
                }),
                cipher(&r["tls.handshake.ciphersuite"]),
                alpn,
                Some(group(grp)).filter(|s| !s.is_empty()),
                retried,
                (!hrr).then(|| !server_cert.contains_key(stream)),
            );
            let got: Option<ServerHello> = resp.as_ref().map(|s| {
                let str_of = |k: &str| s[k].as_str().map(String::from);
                (
                    str_of("version").unwrap_or_default(),
                    str_of("cipher").unwrap_or_default(),
                    // A HelloRetryRequest carries no ALPN.
                    if hrr { None } else { str_of("alpn") },
                    // A TLS 1.2 group comes from the ServerKeyExchange, whose curve is not
                    // among the truth's fields: compared only where tshark has a key_share.
                    str_of(if hrr { "hrr_group" } else { "group" }).filter(|_| !grp.is_empty()),
                    s["hrr"].as_bool() == Some(true),
                    (!hrr).then(|| s["resumed"].as_bool() == Some(true)),
                )
            });
            c.check(
                &format!("{capture} port {port} ServerHello #{k}"),
                &want,
                got.as_ref(),
            );
            *k += 1;
        }
    }
    c.print_and_assert();
    assert_eq!(
        ours.len(),
        client_port.len(),
        "{capture}: one entry per connection"
    );
    assert_eq!(stats.dissect_errors, 0, "{capture}: {stats:?}");
    for e in ours.values() {
        assert_eq!(e.method.as_deref(), Some("handshake"));
        assert_eq!(e.status, Some(0), "{capture} port {}", e.src.port);
        assert!(e.elapsed_us.is_some_and(|us| us > 0));
    }
    entries
}

#[test]
fn tls_handshakes_match_tshark() {
    if skip() {
        return;
    }
    let entries = conformance("tls_handshakes");
    // Certificates are plaintext in TLS 1.2 only. tshark's truth has no certificate fields:
    // the README says s_server presents its RSA certificate for SNI rsa and its default one
    // otherwise, and the capture's Certificate messages carry CN=rsa.corpus.test and
    // CN=api.corpus.test (self-signed).
    let mut tls12 = 0;
    for e in entries.iter().filter(|e| e.protocol == "tls") {
        let resp = detail(&e.response);
        let certs = resp["certificates"].as_array().unwrap();
        if resp["version"] == "TLS 1.3" {
            assert!(certs.is_empty());
            continue;
        }
        tls12 += 1;
        let cn = if e.path.as_deref() == Some("rsa.corpus.test") {
            "CN=rsa.corpus.test"
        } else {
            "CN=api.corpus.test"
        };
        assert_eq!(certs[0]["subject"], cn, "{:?}", e.path);
        assert_eq!(certs[0]["issuer"], cn, "{:?}", e.path);
        assert!(resp["client_certificates"].as_array().unwrap().is_empty());
    }
    assert_eq!(tls12, 4, "beta, rsa, no SNI and www");
    let hrr: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.path.as_deref() == Some("hrr.corpus.test"))
        .collect();
    assert_eq!(hrr.len(), 1, "the HelloRetryRequest stays one handshake");
    assert!(
        entries
            .iter()
            .any(|e| e.protocol == "tls" && e.path.is_none()),
        "the no-SNI handshake"
    );
}

#[test]
fn http2_tls_matches_tshark() {
    if skip() {
        return;
    }
    conformance("http2_tls");
}

/// HTTP/1 inside TLS 1.2 and 1.3 (openssl s_server and nginx), decrypted with
/// `pcaps/tls_handshakes.keylog` as tshark did for the truth: per connection, the same
/// requests, and the same statuses where tshark decoded one.
#[test]
fn http_over_tls_with_keylog_matches_tshark() {
    if skip() {
        return;
    }
    let name = "tls_handshakes";
    let (entries, stats) = run_with_keylog(name, 1 << 20, true);
    let servers = ["18443", "18444", "18445"];
    let mut want: BTreeMap<String, (String, String, Option<i32>)> = BTreeMap::new();
    let mut codes: BTreeMap<String, i32> = BTreeMap::new();
    for row in truth(name) {
        let (sp, dp) = (&row["tcp.srcport"], &row["tcp.dstport"]);
        if servers.contains(&dp.as_str()) && !row["http.request.method"].is_empty() {
            want.insert(
                sp.clone(),
                (
                    row["http.request.method"].clone(),
                    row["http.request.uri"].clone(),
                    None,
                ),
            );
        }
        if servers.contains(&sp.as_str()) {
            if let Some(c) = split(&row["http.response.code"]).first() {
                codes.insert(dp.clone(), c.parse().unwrap());
            }
        }
    }
    for (port, c) in codes {
        if let Some(w) = want.get_mut(&port) {
            w.2 = Some(c);
        }
    }
    let mut c = Conformance::new("http+tls", name);
    let got: BTreeMap<String, (String, String, Option<i32>)> = entries
        .iter()
        .filter(|e| e.protocol == "http")
        .map(|e| {
            (
                e.src.port.to_string(),
                (
                    e.method.clone().unwrap_or_default(),
                    e.path.clone().unwrap_or_default(),
                    e.status,
                ),
            )
        })
        .collect();
    for (port, w) in &want {
        // tshark shows no status for s_server's `-www` replies; compare what it decoded.
        let g = got
            .get(port)
            .map(|g| (g.0.clone(), g.1.clone(), w.2.and(g.2)));
        c.check(&format!("client port {port}"), w, g.as_ref());
    }
    c.print_and_assert();
    assert_eq!(stats.dissect_errors, 0);
    for e in entries.iter().filter(|e| e.protocol == "tls") {
        let r = detail(&e.response);
        if !r["decryption"].is_null() && e.status == Some(0) {
            assert_eq!(r["decryption"]["failed_records"], 0, "{r}");
        }
    }
}
