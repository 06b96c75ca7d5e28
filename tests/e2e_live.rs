//! Live views over WebSockets with the real binary: the tail streams exactly the acknowledged
//! entries a KFL matches, the live service map adds up to the stored map, a bad query is a
//! 400 before any upgrade, and a client that does not read is told what it missed instead of
//! making the server buffer without bound.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, path: &str) -> Ws {
    let url = format!("{}{path}", server.http.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Next JSON text message, or `None` after `wait` without one.
async fn next<S>(ws: &mut S, wait: Duration) -> Option<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("websocket: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_and_live_service_map() {
    if !corpus_available() {
        return;
    }
    let dir = temp_dir("live");
    let server = Server::start(&dir.join("data"));

    // A bad query never upgrades.
    let url = format!(
        "{}/api/v1/stream?kfl=response.status%20%3D%3D",
        server.http.replace("http://", "ws://")
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected a 400, got {other:?}"),
    }

    let mut tail = connect(
        &server,
        "/api/v1/stream?kfl=http%20and%20src.namespace%20%3D%3D%20%22shop%22",
    )
    .await;
    let mut live_map = connect(&server, "/api/v1/servicemap/live?group_by=workload").await;
    let mut limited = connect(&server, "/api/v1/stream?kfl=dns%20and%20limit(3)").await;
    let srv = &server;
    tokio::task::block_in_place(|| import_cluster_mix(&srv.flight, &["--batch-rows", "100"]));

    // The tail: exactly the stored entries that match, each once.
    let want = server.count(r#"http and src.namespace == "shop""#);
    assert!(want > 500, "{want}");
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < want {
        let m = next(&mut tail, Duration::from_secs(30))
            .await
            .expect("tail ended early");
        assert_eq!(m["type"], "entry", "{m}");
        let e = &m["entry"];
        assert_eq!(e["protocol"], "http");
        assert_eq!(e["src"]["namespace"], "shop");
        assert!(
            ids.insert(e["id"].as_str().unwrap().to_string()),
            "sent twice"
        );
    }
    assert!(
        next(&mut tail, Duration::from_millis(1500)).await.is_none(),
        "nothing more matches"
    );

    // limit(3) closes after three entries.
    let mut n = 0;
    while let Some(m) = next(&mut limited, Duration::from_secs(10)).await {
        assert_eq!(m["entry"]["protocol"], "dns");
        n += 1;
    }
    assert_eq!(n, 3);

    // The live map's deltas add up to the stored map of the same traffic.
    let stored: Value = reqwest::get(format!(
        "{}/api/v1/servicemap?group_by=workload",
        server.http
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = |e: &Value| {
        (
            e["source"].as_str().unwrap().to_string(),
            e["target"].as_str().unwrap().to_string(),
            e["protocol"].as_str().unwrap().to_string(),
        )
    };
    let want: BTreeMap<_, u64> = stored["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (key(e), e["count"].as_u64().unwrap()))
        .collect();
    let mut got: BTreeMap<_, u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got != want && Instant::now() < deadline {
        let Some(m) = next(&mut live_map, Duration::from_secs(5)).await else {
            break;
        };
        assert_eq!(m["type"], "delta");
        assert_eq!(m["dropped_batches"], 0);
        for e in m["edges"].as_array().unwrap() {
            *got.entry(key(e)).or_default() += e["count"].as_u64().unwrap();
        }
    }
    assert_eq!(got, want);

    // A client that does not read: a small receive buffer, many small batches, then read.
    let addr = server.http.trim_start_matches("http://").to_string();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    // Small, but not below one loopback segment (64 KiB): a smaller window is never reopened
    // until TCP's persist timer fires, which can take minutes.
    sock.set_recv_buffer_size(65536).unwrap();
    let stream = sock.connect(addr.parse().unwrap()).await.unwrap();
    let (mut slow, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/api/v1/stream"), stream)
            .await
            .unwrap();
    for _ in 0..16 {
        tokio::task::block_in_place(|| import_cluster_mix(&srv.flight, &["--batch-rows", "20"]));
    }
    let mut dropped = 0;
    let mut entries = 0;
    while let Some(m) = next(&mut slow, Duration::from_secs(3)).await {
        match m["type"].as_str() {
            Some("dropped") => dropped += m["batches"].as_u64().unwrap(),
            Some("entry") => entries += 1,
            other => panic!("unexpected message {other:?}"),
        }
    }
    eprintln!("slow client: {entries} entries received, told of {dropped} dropped batches");
    assert!(
        dropped > 0,
        "a client that does not read is told what it missed"
    );
    assert!(entries > 0);
    let _ = slow.close(None).await;
    assert_eq!(server.get("/healthz").0, 200);
}
