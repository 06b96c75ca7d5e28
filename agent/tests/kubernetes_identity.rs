//! Kubernetes identity end to end: the agent's kube-rs watchers against an API server
//! (`kube_api`, real list/watch JSON shapes, bookmarks, `410 Gone`), then real traffic
//! (`http1_keepalive.pcap`, its addresses rewritten to pod IPs) through the real `Pipeline` with
//! capture times around the changes:
//! - a pod created → its IP resolves (pod, namespace, workload from owner references, node,
//!   service from the service selector); a pod on another node is not watched;
//! - a pod deleted and its IP reused by a new pod → traffic captured before keeps the old
//!   identity, traffic after gets the new one;
//! - a pod deleted while the watch was down (`410 Gone`, relist) → its interval ends;
//! - pod targeting: flows with neither end targeted are not dissected, and counted.
//!
//! Expected requests come from tshark's truth for the capture (`truth/http1_keepalive`).

mod kube_api;
mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use kube_api::KubeApi;
use serde_json::{json, Value};
use wiretrail_agent::identity::kubernetes::{connect, KubeWatch};
use wiretrail_agent::{
    CaptureReader, IdentityResolver, LinkType, Pipeline, PipelineConfig, PodFilter,
};
use wiretrail_proto::Entry;

use support::{corpus, skip, split, truth};

const NODE: &str = "node-a";
const REUSED_IP: &str = "10.244.1.7";
const CLIENT_IP: &str = "10.244.1.9";

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// RFC 3339 with seconds, as the API server writes timestamps.
fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn pod(
    name: &str,
    ns: &str,
    node: &str,
    ip: &str,
    owner: (&str, &str),
    labels: Value,
    since_us: i64,
) -> Value {
    let ts = rfc3339(since_us);
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"),
            "creationTimestamp": ts, "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1,
                "uid": format!("uid-{}", owner.1), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "nginx:1.27"}]},
        "status": {"phase": "Running", "hostIP": "10.0.0.11", "podIP": ip,
            "podIPs": [{"ip": ip}], "startTime": ts}
    })
}

fn service(name: &str, ns: &str, ip: &str, selector: Value) -> Value {
    json!({
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-svc-{name}"),
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "selector": selector,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
    })
}

fn node(name: &str, ip: &str) -> Value {
    json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"addresses": [{"type": "InternalIP", "address": ip},
            {"type": "Hostname", "address": name}]}
    })
}

fn endpoint_slice(service: &str, ns: &str, ips: &[&str]) -> Value {
    json!({
        "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"name": format!("{service}-abcde"), "namespace": ns,
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": ips.iter().map(|ip| json!({"addresses": [ip],
            "conditions": {"ready": true}, "nodeName": NODE})).collect::<Vec<_>>(),
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}

/// Polls (bounded) until `ip` resolves as `want` at the current time.
async fn wait_resolved(r: &IdentityResolver, ip: &str, want: Option<&str>) -> i64 {
    let ip: IpAddr = ip.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = now_us();
        let got = r.lookup(&ip, now).map(|i| i.name);
        if got.as_deref() == want {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{ip} resolves to {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `http1_keepalive.pcap` (both ends 127.0.0.1, servers on 18080/18081, clients on ephemeral
/// ports) with the server at
/// `REUSED_IP` and the client at `CLIENT_IP`, shifted so its first packet is at `start_us`.
fn traffic(start_us: i64) -> Vec<(i64, LinkType, Vec<u8>)> {
    let mut r = CaptureReader::open(corpus().join("pcaps/http1_keepalive.pcap")).unwrap();
    let server: IpAddr = REUSED_IP.parse().unwrap();
    let client: IpAddr = CLIENT_IP.parse().unwrap();
    let (IpAddr::V4(server), IpAddr::V4(client)) = (server, client) else {
        unreachable!()
    };
    let mut out = Vec::new();
    let mut first = None;
    while let Some(p) = r.next_packet().unwrap() {
        assert!(
            matches!(p.link, LinkType::Ethernet),
            "the capture is Ethernet"
        );
        let mut d = p.data;
        assert_eq!(&d[12..14], &[0x08, 0x00], "IPv4");
        let ihl = ((d[14] & 0x0f) as usize) * 4;
        let l4 = 14 + ihl;
        let sport = u16::from_be_bytes([d[l4], d[l4 + 1]]);
        let dport = u16::from_be_bytes([d[l4 + 2], d[l4 + 3]]);
        let (src, dst) = if sport < dport {
            (server, client)
        } else {
            (client, server)
        };
        d[26..30].copy_from_slice(&src.octets());
        d[30..34].copy_from_slice(&dst.octets());
        let t0 = *first.get_or_insert(p.ts_us);
        out.push((start_us + (p.ts_us - t0), p.link, d));
    }
    out
}

fn run(config: &PipelineConfig, packets: &[(i64, LinkType, Vec<u8>)]) -> (Vec<Entry>, u64) {
    let mut p = Pipeline::new(config.clone());
    for (ts, link, data) in packets {
        p.packet(*ts, *link, data);
    }
    p.finish();
    (p.take_entries(), p.stats().untargeted_flows)
}

/// (method, path) of the HTTP requests among the entries.
fn requests(entries: &[Entry]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e.method.is_some())
        .map(|e| {
            (
                e.method.clone().unwrap_or_default(),
                e.path.clone().unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_identity_follows_pods_and_keeps_history() {
    if skip() {
        return;
    }
    // tshark's requests: (method, URI) of every HTTP request frame.
    let truth: Vec<(String, String)> = {
        let mut v: Vec<_> = truth("http1_keepalive")
            .iter()
            .flat_map(|r| {
                let g = |c: &str| r.get(c).cloned().unwrap_or_default();
                split(&g("http.request.method"))
                    .into_iter()
                    .zip(split(&g("http.request.uri")))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    };
    assert!(!truth.is_empty());
    let api = KubeApi::start().await;
    let hour_ago = now_us() - 3_600_000_000;
    api.apply("Node", node(NODE, "10.0.0.11"));
    api.apply("Node", node("node-b", "10.0.0.12"));
    api.apply(
        "Service",
        service("api", "shop", "10.96.0.20", json!({"app": "api"})),
    );
    api.apply(
        "Service",
        service("web", "shop", "10.96.0.30", json!({"app": "web"})),
    );
    api.apply(
        "Pod",
        pod(
            "api-6f7b9c4d8-9tq7m",
            "shop",
            NODE,
            REUSED_IP,
            ("ReplicaSet", "api-6f7b9c4d8"),
            json!({"app": "api", "pod-template-hash": "6f7b9c4d8"}),
            hour_ago,
        ),
    );
    api.apply(
        "Pod",
        pod(
            "cache-0",
            "shop",
            "node-b",
            "10.244.2.5",
            ("StatefulSet", "cache"),
            json!({"app": "cache"}),
            hour_ago,
        ),
    );
    api.apply("EndpointSlice", endpoint_slice("api", "shop", &[REUSED_IP]));

    let dir = std::env::temp_dir().join(format!("wiretrail-kube-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let client = connect(Some(&kubeconfig)).await.expect("kubeconfig loads");
    let watch = KubeWatch::start(client, NODE);
    assert!(
        watch.wait_synced(Duration::from_secs(30)).await,
        "first lists done"
    );
    let resolver = watch.resolver();

    // Listed objects resolve: the pod (workload = the Deployment behind its ReplicaSet,
    // service by selector), ClusterIPs, node addresses; a pod on another node is not watched.
    let now = now_us();
    let a = resolver
        .lookup(&REUSED_IP.parse().unwrap(), now)
        .expect("listed pod resolves");
    assert_eq!(a.name, "api-6f7b9c4d8-9tq7m");
    assert_eq!(a.pod.as_deref(), Some("api-6f7b9c4d8-9tq7m"));
    assert_eq!(a.namespace.as_deref(), Some("shop"));
    assert_eq!(a.workload.as_deref(), Some("api"));
    assert_eq!(a.service.as_deref(), Some("api"));
    assert_eq!(a.node.as_deref(), Some(NODE));
    let svc = resolver
        .lookup(&"10.96.0.20".parse().unwrap(), now)
        .unwrap();
    assert_eq!(
        (svc.name.as_str(), svc.service.as_deref()),
        ("api", Some("api"))
    );
    assert_eq!(
        resolver
            .lookup(&"10.0.0.11".parse().unwrap(), now)
            .unwrap()
            .node
            .as_deref(),
        Some(NODE)
    );
    assert!(
        resolver
            .lookup(&"10.244.2.5".parse().unwrap(), now)
            .is_none(),
        "node-b's pod is not watched"
    );
    let reqs = api.requests();
    assert!(
        reqs.iter().any(|(k, w)| k == "Pod" && *w),
        "pods are watched, not polled: {reqs:?}"
    );

    // Pod created → its IP resolves.
    api.apply(
        "Pod",
        pod(
            "web-0",
            "shop",
            NODE,
            CLIENT_IP,
            ("StatefulSet", "web"),
            json!({"app": "web"}),
            now_us(),
        ),
    );
    let web_seen = wait_resolved(&resolver, CLIENT_IP, Some("web-0")).await;
    let web = resolver
        .lookup(&CLIENT_IP.parse().unwrap(), now_us())
        .unwrap();
    assert_eq!(web.workload.as_deref(), Some("web"));
    assert_eq!(web.service.as_deref(), Some("web"));

    // Pod deleted, its IP reused by a pod of another namespace. The "old" traffic is captured
    // while web-0 and the first api pod both exist (it lasts 0.21 s).
    let old = traffic(web_seen);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_delete = now_us();
    assert!(old.last().unwrap().0 < before_delete);
    api.delete("Pod", "shop", "api-6f7b9c4d8-9tq7m");
    wait_resolved(&resolver, REUSED_IP, None).await;
    api.apply(
        "Pod",
        pod(
            "report-29165d-x7k2p",
            "batch",
            NODE,
            REUSED_IP,
            ("Job", "report-29165d"),
            json!({"job-name": "report-29165d"}),
            now_us(),
        ),
    );
    let after_reuse = wait_resolved(&resolver, REUSED_IP, Some("report-29165d-x7k2p")).await;

    // The same traffic captured before the deletion and after the reuse.
    let config = PipelineConfig {
        node: NODE.into(),
        identities: resolver.clone(),
        ..Default::default()
    };
    let new = traffic(after_reuse + 1_000);
    let (old_entries, _) = run(&config, &old);
    let (new_entries, _) = run(&config, &new);
    assert_eq!(requests(&old_entries), truth);
    assert_eq!(requests(&new_entries), truth);
    for e in &old_entries {
        assert_eq!(
            e.dst.ip, REUSED_IP,
            "{} {:?} {:?} {:?}",
            e.protocol, e.method, e.status, e.src
        );
        assert_eq!(
            e.dst.identity.name, "api-6f7b9c4d8-9tq7m",
            "before: the old pod"
        );
        assert_eq!(e.dst.identity.namespace.as_deref(), Some("shop"));
        assert_eq!(e.src.identity.name, "web-0");
    }
    for e in &new_entries {
        assert_eq!(
            e.dst.identity.name, "report-29165d-x7k2p",
            "after: the new pod"
        );
        assert_eq!(e.dst.identity.namespace.as_deref(), Some("batch"));
        assert_eq!(e.dst.identity.workload.as_deref(), Some("report-29165d"));
        assert_eq!(e.src.identity.name, "web-0");
    }

    // Pod targeting, before dissection: only namespace `batch` (the new pod).
    let targeted = PipelineConfig {
        target: Some(PodFilter::new(vec!["batch".into()], vec![], None).unwrap()),
        ..config.clone()
    };
    let (none, untargeted) = run(&targeted, &old);
    assert!(none.is_empty(), "old traffic is shop ↔ shop: not dissected");
    assert!(untargeted > 0);
    let (all, untargeted) = run(&targeted, &new);
    assert_eq!(requests(&all), truth);
    assert_eq!(untargeted, 0);
    let by_regex = PipelineConfig {
        target: Some(PodFilter::new(vec![], vec!["batch".into()], Some("^web-")).unwrap()),
        ..config.clone()
    };
    assert_eq!(
        requests(&run(&by_regex, &new).0),
        truth,
        "web-0 is the client end"
    );

    // The watch expires (410 Gone) while the new pod is deleted unseen: the relist ends it.
    let relists = resolver.stats().relists;
    let before_gap = now_us();
    api.expire_watches(|api| api.delete_unseen("Pod", "batch", "report-29165d-x7k2p"));
    wait_resolved(&resolver, REUSED_IP, None).await;
    let stats = resolver.stats();
    assert!(stats.relists > relists, "relisted after 410: {stats:?}");
    assert!(stats.watch_errors >= 1, "the 410 was counted: {stats:?}");
    let ip: IpAddr = REUSED_IP.parse().unwrap();
    assert_eq!(
        resolver.lookup(&ip, before_gap).unwrap().name,
        "report-29165d-x7k2p"
    );
    assert_eq!(
        resolver.lookup(&ip, before_delete - 1).unwrap().name,
        "api-6f7b9c4d8-9tq7m"
    );
    assert!(stats.misses > 0 && stats.hits > 0);
    drop(watch);
    let _ = std::fs::remove_dir_all(&dir);
}
