//! Kubernetes objects → identities: a pod's addresses, workload (from its owner references),
//! node and service; a service's ClusterIPs; a node's internal addresses.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use wiretrail_proto::Identity;

/// Label EndpointSlices carry with the name of their service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub(super) fn micros(t: &Time) -> i64 {
    t.0.as_microsecond()
}

/// The key a pod's intervals are recorded under.
pub(super) fn pod_owner(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) => format!("pod/{uid}"),
        None => format!(
            "pod/{}/{}",
            pod.namespace().unwrap_or_default(),
            pod.name_any()
        ),
    }
}

pub(super) fn service_owner(svc: &Service) -> String {
    format!(
        "service/{}/{}",
        svc.namespace().unwrap_or_default(),
        svc.name_any()
    )
}

pub(super) fn node_owner(node: &Node) -> String {
    format!("node/{}", node.name_any())
}

/// The pod's own addresses. Host-network pods have the node's address, which stays the
/// node's: they get none.
pub(super) fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return Vec::new();
    }
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if let Some(ip) = status.pod_ip.as_deref().and_then(|s| s.parse().ok()) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// A finished pod (Succeeded/Failed) has released its address although the object remains.
pub(super) fn pod_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// When the pod could have got its address: its start time, else its creation.
pub(super) fn pod_since(pod: &Pod) -> Option<i64> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map(micros)
}

/// The workload that runs the pod, from its controller owner reference: a ReplicaSet is named
/// after its Deployment plus the `pod-template-hash` label, which is trimmed off; StatefulSets,
/// DaemonSets and Jobs (and anything else) are taken as named.
pub(super) fn workload(pod: &Pod) -> Option<String> {
    let owners = pod.metadata.owner_references.as_ref()?;
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or(owners.first())?;
    if owner.kind == "ReplicaSet" {
        if let Some(hash) = pod.labels().get("pod-template-hash") {
            if let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}")) {
                return Some(deployment.to_string());
            }
        }
    }
    Some(owner.name.clone())
}

/// The first service in the pod's namespace whose (non-empty) selector matches its labels.
pub(super) fn service_by_selector<'a>(
    pod: &Pod,
    services: impl Iterator<Item = &'a Service>,
) -> Option<String> {
    let ns = pod.namespace();
    let labels = pod.labels();
    let mut names: Vec<String> = services
        .filter(|s| s.namespace() == ns)
        .filter(|s| {
            let sel = s.spec.as_ref().and_then(|sp| sp.selector.as_ref());
            sel.is_some_and(|sel| {
                !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
        })
        .map(|s| s.name_any())
        .collect();
    names.sort();
    names.into_iter().next()
}

/// The service whose EndpointSlice lists `ip` (for services without a selector, or before the
/// services are known).
pub(super) fn service_by_slices<'a>(
    ip: &IpAddr,
    ns: Option<&str>,
    slices: impl Iterator<Item = &'a EndpointSlice>,
) -> Option<String> {
    let text = ip.to_string();
    slices
        .filter(|s| ns.is_none() || s.metadata.namespace.as_deref() == ns)
        .find(|s| s.endpoints.iter().any(|e| e.addresses.contains(&text)))
        .and_then(|s| s.labels().get(SERVICE_NAME_LABEL).cloned())
}

/// `(ip, namespace, service)` for every address an EndpointSlice lists.
pub(super) fn slice_addresses(slice: &EndpointSlice) -> Vec<(IpAddr, String, String)> {
    let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) else {
        return Vec::new();
    };
    let ns = slice.namespace().unwrap_or_default();
    slice
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse().ok())
        .map(|ip| (ip, ns.clone(), service.clone()))
        .collect()
}

pub(super) fn pod_identity(pod: &Pod, service: Option<String>) -> Identity {
    let name = pod.name_any();
    Identity {
        name: name.clone(),
        namespace: pod.namespace(),
        pod: Some(name),
        service,
        workload: workload(pod),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
    }
}

/// A service's ClusterIPs (headless services have none).
pub(super) fn service_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .collect();
    if let Some(ip) = spec.cluster_ip.as_deref().and_then(|s| s.parse().ok()) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

pub(super) fn service_identity(svc: &Service) -> Identity {
    let name = svc.name_any();
    Identity {
        name: name.clone(),
        namespace: svc.namespace(),
        service: Some(name),
        ..Default::default()
    }
}

pub(super) fn node_ips(node: &Node) -> Vec<IpAddr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

pub(super) fn node_identity(node: &Node) -> Identity {
    let name = node.name_any();
    Identity {
        name: name.clone(),
        node: Some(name),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_from_owner_references() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api-6f7b9c4d8-9tq7m", "namespace": "shop",
                "labels": {"app": "api", "pod-template-hash": "6f7b9c4d8"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "api-6f7b9c4d8", "uid": "u", "controller": true}]},
            "spec": {"containers": [], "nodeName": "node-a"},
            "status": {"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}]}
        }))
        .unwrap();
        assert_eq!(workload(&pod).as_deref(), Some("api"));
        assert_eq!(pod_ips(&pod), vec!["10.244.1.5".parse::<IpAddr>().unwrap()]);
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {"selector": {"app": "api"}, "clusterIP": "10.96.3.4"}
        }))
        .unwrap();
        assert_eq!(
            service_by_selector(&pod, [svc].iter()).as_deref(),
            Some("api")
        );
        let id = pod_identity(&pod, None);
        assert_eq!(id.node.as_deref(), Some("node-a"));
        assert_eq!(id.namespace.as_deref(), Some("shop"));
    }
}
