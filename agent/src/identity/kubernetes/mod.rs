//! Kubernetes identity with kube-rs: list+watch of this node's pods (field selector
//! `spec.nodeName=NODE`), all services, EndpointSlices and nodes, each into a reflector store,
//! and every event into the [`IdentityHistory`] with its validity interval:
//!
//! - pod listed/added/modified → its IPs are its own from its start time (never before the
//!   previous owner's end); deleted, or finished (Succeeded/Failed) → the interval ends now;
//! - service → its ClusterIPs; node → its Internal/External IPs; EndpointSlice → fills the
//!   service of the pods it lists (for services without a selector, or slices seen late);
//! - after every (re)list — the first one, and after a watch error or `410 Gone` — owners not
//!   in the new list are ended (their Deleted event was missed).
//!
//! Watch errors are logged, counted (`IdentityCounters::watch_errors`) and retried with
//! kube-runtime's default backoff (exponential, capped); the agent never stops for them.

mod objects;

use std::collections::HashSet;
use std::fmt::Debug;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Config};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use wiretrail_proto::Identity;

use super::{IdentityCounters, IdentityHistory, IdentityResolver};
use crate::{now_us, AgentError};

/// Resources watched; `synced` counts those whose first list is done.
const RESOURCES: usize = 4;

/// A client from `kubeconfig`, else the in-cluster service account (or `$KUBECONFIG`,
/// `~/.kube/config`), as `kubectl` would choose.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, AgentError> {
    let err =
        |what: &str, e: &dyn std::fmt::Display| AgentError::Kubernetes(format!("{what}: {e}"));
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| err(&format!("kubeconfig {}", path.display()), &e))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| err(&format!("kubeconfig {}", path.display()), &e))?
        }
        None => Config::infer()
            .await
            .map_err(|e| err("no in-cluster config or kubeconfig", &e))?,
    };
    Client::try_from(config).map_err(|e| err("client", &e))
}

/// The watcher tasks; they stop when the last holder (the [`KubeWatch`] and every resolver
/// made from it) is dropped.
#[derive(Debug)]
pub struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The running watchers and their stores.
pub struct KubeWatch {
    history: Arc<IdentityHistory>,
    counters: Arc<IdentityCounters>,
    synced: Arc<AtomicUsize>,
    tasks: Arc<Tasks>,
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub nodes: Store<Node>,
}

/// What every watcher task shares.
#[derive(Clone)]
struct Shared {
    history: Arc<IdentityHistory>,
    counters: Arc<IdentityCounters>,
    synced: Arc<AtomicUsize>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
}

impl KubeWatch {
    /// Starts the four watchers on the current tokio runtime; returns at once (see
    /// [`KubeWatch::wait_synced`]).
    pub fn start(client: Client, node: &str) -> Self {
        let history = Arc::new(IdentityHistory::new());
        let counters = Arc::new(IdentityCounters::default());
        let synced = Arc::new(AtomicUsize::new(0));
        let (pods, pods_w) = reflector::store::<Pod>();
        let (services, services_w) = reflector::store::<Service>();
        let (slices, slices_w) = reflector::store::<EndpointSlice>();
        let (nodes, nodes_w) = reflector::store::<Node>();
        let shared = Shared {
            history: history.clone(),
            counters: counters.clone(),
            synced: synced.clone(),
            services: services.clone(),
            slices: slices.clone(),
        };
        let cfg = watcher::Config::default().any_semantic();
        let pod_cfg = cfg.clone().fields(&format!("spec.nodeName={node}"));
        let tasks = vec![
            spawn(
                "services",
                reflector::reflector(services_w, watcher(Api::all(client.clone()), cfg.clone())),
                shared.clone(),
                Handler::Services(HashSet::new()),
            ),
            spawn(
                "endpointslices",
                reflector::reflector(slices_w, watcher(Api::all(client.clone()), cfg.clone())),
                shared.clone(),
                Handler::Slices,
            ),
            spawn(
                "nodes",
                reflector::reflector(nodes_w, watcher(Api::all(client.clone()), cfg)),
                shared.clone(),
                Handler::Nodes(HashSet::new()),
            ),
            spawn(
                "pods",
                reflector::reflector(pods_w, watcher(Api::all(client), pod_cfg)),
                shared,
                Handler::Pods(HashSet::new()),
            ),
        ];
        info!(node, "kubernetes identity: watching this node's pods, all services, endpointslices and nodes");
        KubeWatch {
            history,
            counters,
            synced,
            tasks: Arc::new(Tasks(tasks)),
            pods,
            services,
            slices,
            nodes,
        }
    }

    /// A resolver over the watchers' history (add `--identities` with
    /// [`IdentityResolver::with_static`]).
    /// The resolver keeps the watchers running.
    pub fn resolver(&self) -> IdentityResolver {
        IdentityResolver::live(self.history.clone(), self.counters.clone())
            .keeping(self.tasks.clone())
    }

    pub fn history(&self) -> &Arc<IdentityHistory> {
        &self.history
    }

    /// Waits until every resource has been listed once, at most `timeout`; false if not.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.synced.load(Ordering::Acquire) < RESOURCES {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

fn watcher<K>(api: Api<K>, cfg: watcher::Config) -> impl Stream<Item = watcher::Result<Event<K>>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, cfg).default_backoff()
}

/// Per resource: what a (re)list saw, to end owners that vanished meanwhile.
enum Handler {
    Pods(HashSet<String>),
    Services(HashSet<String>),
    Slices,
    Nodes(HashSet<String>),
}

fn spawn<K, S>(
    what: &'static str,
    stream: S,
    shared: Shared,
    mut handler: Handler,
) -> JoinHandle<()>
where
    K: Send + Sync + 'static,
    S: Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
    Handler: Apply<K>,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut first_list_done = false;
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    shared.counters.watch_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(resource = what, error = %e, "kubernetes watch failed; retrying with backoff");
                    continue;
                }
            };
            let now = now_us();
            match ev {
                Event::Init => {
                    shared.counters.relists.fetch_add(1, Ordering::Relaxed);
                    handler.begin_list();
                }
                Event::InitApply(obj) => {
                    shared.counters.watch_events.fetch_add(1, Ordering::Relaxed);
                    Apply::<K>::apply(&mut handler, &shared, &obj, true, now);
                }
                Event::InitDone => {
                    let ended = handler.end_list(&shared, now);
                    if ended > 0 {
                        info!(
                            resource = what,
                            ended, "relist: ended owners deleted while the watch was down"
                        );
                    }
                    if !first_list_done {
                        first_list_done = true;
                        shared.synced.fetch_add(1, Ordering::AcqRel);
                    }
                }
                Event::Apply(obj) => {
                    shared.counters.watch_events.fetch_add(1, Ordering::Relaxed);
                    Apply::<K>::apply(&mut handler, &shared, &obj, false, now);
                }
                Event::Delete(obj) => {
                    shared.counters.watch_events.fetch_add(1, Ordering::Relaxed);
                    Apply::<K>::delete(&mut handler, &shared, &obj, now);
                }
            }
        }
    })
}

/// One resource's events → history.
trait Apply<K> {
    fn apply(&mut self, shared: &Shared, obj: &K, listed: bool, now: i64);
    fn delete(&mut self, shared: &Shared, obj: &K, now: i64);
}

impl Handler {
    fn begin_list(&mut self) {
        match self {
            Handler::Pods(seen) | Handler::Services(seen) | Handler::Nodes(seen) => seen.clear(),
            Handler::Slices => {}
        }
    }

    fn end_list(&mut self, shared: &Shared, now: i64) -> usize {
        let (kind, seen) = match self {
            Handler::Pods(seen) => ("pod/", seen),
            Handler::Services(seen) => ("service/", seen),
            Handler::Nodes(seen) => ("node/", seen),
            Handler::Slices => return 0,
        };
        shared.history.close_missing(kind, seen, now)
    }
}

impl Apply<Pod> for Handler {
    fn apply(&mut self, shared: &Shared, pod: &Pod, listed: bool, now: i64) {
        let owner = objects::pod_owner(pod);
        let ips = objects::pod_ips(pod);
        let uid = pod.metadata.uid.as_deref();
        if objects::pod_finished(pod) {
            for ip in ips {
                shared.history.close(ip, &owner, now);
            }
            if let Some(uid) = uid {
                shared.history.forget_pod(uid);
            }
            return;
        }
        if let (Handler::Pods(seen), true) = (&mut *self, listed) {
            seen.insert(owner.clone());
        }
        let services = shared.services.state();
        let service =
            objects::service_by_selector(pod, services.iter().map(|s| &**s)).or_else(|| {
                let slices = shared.slices.state();
                let ns = pod.metadata.namespace.as_deref();
                ips.iter()
                    .find_map(|ip| objects::service_by_slices(ip, ns, slices.iter().map(|s| &**s)))
            });
        let identity = objects::pod_identity(pod, service);
        if let Some(uid) = uid {
            shared.history.set_pod(uid, identity.clone());
        }
        // Its address is its own since it started (seconds resolution; the history moves the
        // start past a previous owner's end).
        let from = objects::pod_since(pod).unwrap_or(now).min(now);
        for ip in ips {
            shared.history.open(ip, &owner, identity.clone(), from, now);
        }
    }

    fn delete(&mut self, shared: &Shared, pod: &Pod, now: i64) {
        let owner = objects::pod_owner(pod);
        for ip in objects::pod_ips(pod) {
            shared.history.close(ip, &owner, now);
        }
        if let Some(uid) = pod.metadata.uid.as_deref() {
            shared.history.forget_pod(uid);
        }
    }
}

/// Gives `owner` the addresses `ips` from its creation (never later than `now`).
fn open_all(
    shared: &Shared,
    owner: &str,
    identity: Identity,
    created: Option<&Time>,
    ips: impl IntoIterator<Item = IpAddr>,
    now: i64,
) {
    let from = created.map(objects::micros).unwrap_or(now).min(now);
    for ip in ips {
        shared.history.open(ip, owner, identity.clone(), from, now);
    }
}

impl Apply<Service> for Handler {
    fn apply(&mut self, shared: &Shared, svc: &Service, listed: bool, now: i64) {
        let owner = objects::service_owner(svc);
        if let (Handler::Services(seen), true) = (&mut *self, listed) {
            seen.insert(owner.clone());
        }
        let identity = objects::service_identity(svc);
        let created = svc.metadata.creation_timestamp.as_ref();
        open_all(
            shared,
            &owner,
            identity,
            created,
            objects::service_ips(svc),
            now,
        );
    }

    fn delete(&mut self, shared: &Shared, svc: &Service, now: i64) {
        let owner = objects::service_owner(svc);
        for ip in objects::service_ips(svc) {
            shared.history.close(ip, &owner, now);
        }
    }
}

impl Apply<EndpointSlice> for Handler {
    fn apply(&mut self, shared: &Shared, slice: &EndpointSlice, _listed: bool, _now: i64) {
        for (ip, ns, service) in objects::slice_addresses(slice) {
            shared.history.fill_service(&ip, &ns, &service);
        }
    }

    fn delete(&mut self, _: &Shared, _: &EndpointSlice, _: i64) {}
}

impl Apply<Node> for Handler {
    fn apply(&mut self, shared: &Shared, node: &Node, listed: bool, now: i64) {
        let owner = objects::node_owner(node);
        if let (Handler::Nodes(seen), true) = (&mut *self, listed) {
            seen.insert(owner.clone());
        }
        let identity = objects::node_identity(node);
        let created = node.metadata.creation_timestamp.as_ref();
        open_all(
            shared,
            &owner,
            identity,
            created,
            objects::node_ips(node),
            now,
        );
    }

    fn delete(&mut self, shared: &Shared, node: &Node, now: i64) {
        let owner = objects::node_owner(node);
        for ip in objects::node_ips(node) {
            shared.history.close(ip, &owner, now);
        }
    }
}
