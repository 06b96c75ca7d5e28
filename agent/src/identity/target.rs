//! Pod targeting: which pods' traffic is dissected. The pipeline asks this once per flow,
//! before any byte is dissected; a flow with neither end targeted is ignored (and counted).

use regex::Regex;
use wiretrail_proto::Identity;

use crate::AgentError;

/// Namespace include/exclude lists and a pod-name regex. An identity is targeted when it has a
/// namespace that is included (or the include list is empty) and not excluded, and — when a
/// regex is given — it is a pod whose name matches. Addresses without a namespace (nodes,
/// unknown IPs) are never targets themselves; their flows are kept when the other end is.
#[derive(Debug, Clone, Default)]
pub struct PodFilter {
    namespaces: Vec<String>,
    exclude_namespaces: Vec<String>,
    pod_regex: Option<Regex>,
}

impl PodFilter {
    pub fn new(
        namespaces: Vec<String>,
        exclude_namespaces: Vec<String>,
        pod_regex: Option<&str>,
    ) -> Result<Self, AgentError> {
        let pod_regex = pod_regex
            .map(|re| {
                Regex::new(re).map_err(|e| AgentError::Config(format!("--pod-regex {re:?}: {e}")))
            })
            .transpose()?;
        let clean = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Ok(PodFilter {
            namespaces: clean(namespaces),
            exclude_namespaces: clean(exclude_namespaces),
            pod_regex,
        })
    }

    /// True when the filter selects everything (no lists, no regex): no need to apply it.
    pub fn is_everything(&self) -> bool {
        self.namespaces.is_empty() && self.exclude_namespaces.is_empty() && self.pod_regex.is_none()
    }

    pub fn matches(&self, id: &Identity) -> bool {
        let Some(ns) = id.namespace.as_deref() else {
            return false;
        };
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == ns) {
            return false;
        }
        if self.exclude_namespaces.iter().any(|n| n == ns) {
            return false;
        }
        match &self.pod_regex {
            None => true,
            Some(re) => id.pod.as_deref().is_some_and(|p| re.is_match(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str) -> Identity {
        Identity {
            name: name.into(),
            namespace: Some(ns.into()),
            pod: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn include_exclude_and_regex() {
        let f = PodFilter::new(vec!["shop".into(), "pay".into()], vec![], Some("^api-")).unwrap();
        assert!(f.matches(&pod("shop", "api-6f7b9c4d8-9tq7m")));
        assert!(!f.matches(&pod("shop", "frontend-1")));
        assert!(!f.matches(&pod("kube-system", "api-x")));
        let f = PodFilter::new(vec![], vec!["kube-system".into()], None).unwrap();
        assert!(f.matches(&pod("shop", "x")));
        assert!(!f.matches(&pod("kube-system", "coredns-1")));
        assert!(!f.matches(&Identity {
            name: "10.0.0.1".into(),
            ..Default::default()
        }));
        assert!(PodFilter::new(vec![], vec![], Some("(")).is_err());
        assert!(PodFilter::new(vec![" ".into()], vec![], None)
            .unwrap()
            .is_everything());
    }
}
