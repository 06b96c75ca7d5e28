//! The static identity map of `--identities FILE`: valid at every time (outside Kubernetes,
//! or for addresses the watchers do not cover).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use wiretrail_proto::Identity;

use crate::AgentError;

#[derive(Debug, Deserialize)]
struct FileEntry {
    name: Option<String>,
    pod: Option<String>,
    namespace: Option<String>,
    service: Option<String>,
    workload: Option<String>,
    node: Option<String>,
}

/// IP → identity; unknown IPs resolve to an identity named after the IP.
#[derive(Debug, Default, Clone)]
pub struct IdentityMap {
    by_ip: HashMap<IpAddr, Identity>,
}

impl IdentityMap {
    /// Reads a JSON object `{"10.0.0.1": {"pod": …, "namespace": …, "service": …,
    /// "workload": …, "node": …, "name": …}, …}`; null or missing fields are fine.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, AgentError> {
        let path = path.as_ref();
        let err = |reason: String| AgentError::Identities {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let raw: HashMap<String, FileEntry> =
            serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let mut by_ip = HashMap::new();
        for (ip, f) in raw {
            let addr: IpAddr = ip
                .parse()
                .map_err(|_| err(format!("{ip:?} is not an IP address")))?;
            let name = f
                .name
                .clone()
                .or_else(|| f.pod.clone())
                .or_else(|| f.service.clone())
                .or_else(|| f.workload.clone())
                .unwrap_or_else(|| ip.clone());
            by_ip.insert(
                addr,
                Identity {
                    name,
                    namespace: f.namespace,
                    pod: f.pod,
                    service: f.service,
                    workload: f.workload,
                    node: f.node,
                },
            );
        }
        Ok(IdentityMap { by_ip })
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// The identity of `ip`, if the file names it.
    pub fn get(&self, ip: &IpAddr) -> Option<&Identity> {
        self.by_ip.get(ip)
    }

    /// The identity of `ip`; unknown addresses get an identity named after the IP.
    pub fn resolve(&self, ip: &IpAddr) -> Identity {
        self.by_ip.get(ip).cloned().unwrap_or_else(|| Identity {
            name: ip.to_string(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_corpus_identity_map() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus/pcaps/cluster_mix.identities.json");
        if !p.exists() {
            eprintln!("SKIP: {} not found", p.display());
            return;
        }
        let m = IdentityMap::load(&p).unwrap();
        let api = m.resolve(&"127.0.10.2".parse().unwrap());
        assert_eq!(api.name, "api-6f7b9c4d8-9tq7m");
        assert_eq!(api.namespace.as_deref(), Some("shop"));
        assert_eq!(api.service.as_deref(), Some("api"));
        let kubelet = m.resolve(&"127.0.1.1".parse().unwrap());
        assert_eq!(kubelet.name, "kubelet");
        assert_eq!(kubelet.node.as_deref(), Some("node-a"));
        assert_eq!(m.resolve(&"10.9.9.9".parse().unwrap()).name, "10.9.9.9");
    }
}
