//! A Kubernetes API server for the identity tests: no kube-apiserver can be installed from the
//! registries this machine reaches (Debian ships etcd and kubectl, not the API server; PyPI and
//! npm have no envtest/kwok distribution), so this serves list and watch responses in the real
//! API's JSON shapes (as `kubectl get --raw` shows them; objects are Kubernetes v1 objects
//! written by the test): lists with
//! `metadata.resourceVersion`, chunked watch streams of `ADDED`/`MODIFIED`/`DELETED` events,
//! `BOOKMARK` events (when `allowWatchBookmarks=true`), and `ERROR` events with a `410 Gone`
//! Status (`reason: Expired`) for a watch from a compacted resourceVersion, which forces the
//! client to relist. Field selectors on `spec.nodeName` are honoured for pods.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

/// The resources the agent watches: (path, kind, list kind, apiVersion).
const RESOURCES: [(&str, &str, &str, &str); 4] = [
    ("/api/v1/pods", "Pod", "PodList", "v1"),
    ("/api/v1/services", "Service", "ServiceList", "v1"),
    ("/api/v1/nodes", "Node", "NodeList", "v1"),
    (
        "/apis/discovery.k8s.io/v1/endpointslices",
        "EndpointSlice",
        "EndpointSliceList",
        "discovery.k8s.io/v1",
    ),
];

#[derive(Default)]
struct Store {
    rv: u64,
    /// kind → (namespace/name → object)
    objects: HashMap<&'static str, BTreeMap<String, Value>>,
    /// Watch events kept for watches that resume from an older resourceVersion.
    log: Vec<(u64, &'static str, &'static str, Value)>,
    /// Watches from below this resourceVersion get `410 Gone` (the log was compacted).
    compacted: u64,
}

#[derive(Clone)]
struct Api {
    store: Arc<Mutex<Store>>,
    /// New events, and `None` when every open watch must end with `410 Gone`.
    events: broadcast::Sender<Option<(u64, &'static str, &'static str, Value)>>,
    /// (kind, is watch) of every request, for assertions.
    requests: Arc<Mutex<Vec<(String, bool)>>>,
}

pub struct KubeApi {
    api: Api,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(obj: &Value) -> String {
    let m = &obj["metadata"];
    format!(
        "{}/{}",
        m["namespace"].as_str().unwrap_or(""),
        m["name"].as_str().unwrap_or("")
    )
}

impl KubeApi {
    pub async fn start() -> KubeApi {
        let (events, _) = broadcast::channel(1024);
        let api = Api {
            store: Arc::new(Mutex::new(Store {
                rv: 1000,
                ..Default::default()
            })),
            events,
            requests: Arc::default(),
        };
        let mut router = Router::new();
        for (path, kind, list_kind, api_version) in RESOURCES {
            router = router.route(
                path,
                get(
                    move |State(api): State<Api>, Query(q): Query<HashMap<String, String>>| async move {
                        serve(api, kind, list_kind, api_version, q).await
                    },
                ),
            );
        }
        let router = router.with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        KubeApi { api, url, task }
    }

    /// A kubeconfig for this server, as `kind get kubeconfig` writes one (token user).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {}\n  name: test\n\
             contexts:\n- context:\n    cluster: test\n    user: test\n  name: test\n\
             current-context: test\nusers:\n- name: test\n  user:\n    token: test-token\n",
            self.url
        )
    }

    fn change(&self, kind: &'static str, ty: &'static str, mut obj: Value, logged: bool) {
        let mut s = self.api.store.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let k = key(&obj);
        let objects = s.objects.entry(kind).or_default();
        if ty == "DELETED" {
            objects.remove(&k);
        } else {
            objects.insert(k, obj.clone());
        }
        if logged {
            s.log.push((rv, kind, ty, obj.clone()));
            let _ = self.api.events.send(Some((rv, kind, ty, obj)));
        }
    }

    /// Adds or replaces an object (`ADDED` or `MODIFIED` to watchers).
    pub fn apply(&self, kind: &'static str, obj: Value) {
        let exists = {
            let s = self.api.store.lock().unwrap();
            s.objects
                .get(kind)
                .is_some_and(|m| m.contains_key(&key(&obj)))
        };
        self.change(kind, if exists { "MODIFIED" } else { "ADDED" }, obj, true);
    }

    /// The stored object `namespace/name` of `kind` (the test deletes only what exists).
    fn stored(&self, kind: &'static str, namespace: &str, name: &str) -> Value {
        let s = self.api.store.lock().unwrap();
        s.objects
            .get(kind)
            .and_then(|m| m.get(&format!("{namespace}/{name}")))
            .cloned()
            .expect("object to delete exists")
    }

    pub fn delete(&self, kind: &'static str, namespace: &str, name: &str) {
        let obj = self.stored(kind, namespace, name);
        self.change(kind, "DELETED", obj, true);
    }

    /// `meanwhile` happens unseen (no watch event), then the event log is compacted and every
    /// open watch ends with `410 Gone`: watchers only learn of the change by relisting.
    pub fn expire_watches(&self, meanwhile: impl FnOnce(&KubeApi)) {
        meanwhile(self);
        {
            let mut s = self.api.store.lock().unwrap();
            s.compacted = s.rv;
            s.log.clear();
        }
        let _ = self.api.events.send(None);
    }

    /// Deletes without a watch event (inside [`KubeApi::expire_watches`]).
    pub fn delete_unseen(&self, kind: &'static str, namespace: &str, name: &str) {
        let obj = self.stored(kind, namespace, name);
        self.change(kind, "DELETED", obj, false);
    }

    /// (kind, is watch) of every request served so far.
    pub fn requests(&self) -> Vec<(String, bool)> {
        self.api.requests.lock().unwrap().clone()
    }
}

fn field_selected(q: &HashMap<String, String>, obj: &Value) -> bool {
    let Some(sel) = q.get("fieldSelector").filter(|s| !s.is_empty()) else {
        return true;
    };
    sel.split(',').all(|term| match term.split_once('=') {
        Some(("spec.nodeName", v)) => obj["spec"]["nodeName"].as_str() == Some(v),
        Some(("metadata.name", v)) => obj["metadata"]["name"].as_str() == Some(v),
        _ => false,
    })
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap();
    b.push(b'\n');
    Bytes::from(b)
}

fn gone(rv: u64, current: u64) -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure",
        "message": format!("too old resource version: {rv} ({current})"),
        "reason": "Expired", "code": 410}})
}

async fn serve(
    api: Api,
    kind: &'static str,
    list_kind: &'static str,
    api_version: &'static str,
    q: HashMap<String, String>,
) -> Response {
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    api.requests.lock().unwrap().push((kind.to_string(), watch));
    if !watch {
        let s = api.store.lock().unwrap();
        let items: Vec<Value> = s
            .objects
            .get(kind)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|o| field_selected(&q, o))
            .cloned()
            .collect();
        let body = json!({"kind": list_kind, "apiVersion": api_version,
            "metadata": {"resourceVersion": s.rv.to_string()}, "items": items});
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut live = api.events.subscribe();
    let (backlog, current, expired) = {
        let s = api.store.lock().unwrap();
        let backlog: Vec<Value> = s
            .log
            .iter()
            .filter(|(rv, k, _, o)| *rv > from && *k == kind && field_selected(&q, o))
            .map(|(_, _, ty, o)| json!({"type": ty, "object": o}))
            .collect();
        (backlog, s.rv, from != 0 && from < s.compacted)
    };
    tokio::spawn(async move {
        if expired {
            let _ = tx.send(line(&gone(from, current))).await;
            return;
        }
        for ev in backlog {
            if tx.send(line(&ev)).await.is_err() {
                return;
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(Some((_, k, ty, o))) if k == kind && field_selected(&q, &o) => {
                        if tx.send(line(&json!({"type": ty, "object": o}))).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        let now = api.store.lock().unwrap().rv;
                        let _ = tx.send(line(&gone(from, now))).await;
                        return;
                    }
                },
                _ = tick.tick(), if bookmarks => {
                    let rv = api.store.lock().unwrap().rv;
                    let bm = json!({"type": "BOOKMARK", "object": {"kind": kind,
                        "apiVersion": api_version,
                        "metadata": {"resourceVersion": rv.to_string()}}});
                    if tx.send(line(&bm)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}
