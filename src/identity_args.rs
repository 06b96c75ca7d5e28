//! Identity and pod-targeting options of `wiretrail agent` and `wiretrail up` (flattened into
//! their argument structs): Kubernetes watchers, and which pods' traffic is dissected.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use wiretrail_agent::identity::kubernetes::{self, KubeWatch};
use wiretrail_agent::{IdentityMap, IdentityResolver, PodFilter};

/// How long start-up waits for the first list of pods, services, EndpointSlices and nodes
/// before capturing anyway (addresses resolve as soon as the lists arrive).
const SYNC_WAIT: Duration = Duration::from_secs(15);

#[derive(clap::Args, Debug, Clone, Default)]
pub struct IdentityArgs {
    /// Identity map (JSON object: IP → {pod, namespace, service, workload, node}); with
    /// --kubernetes it is consulted for addresses the API does not know.
    #[arg(long, value_name = "FILE")]
    pub identities: Option<PathBuf>,
    /// Name addresses no other source knows by reverse DNS (the system resolver, looked up in
    /// the background: the first flows of a new address keep the bare IP). The lookups are
    /// DNS traffic of their own, which a capture on `any` records.
    #[arg(long)]
    pub reverse_dns: bool,
    /// Resolve addresses to pods, services, workloads and nodes by watching the Kubernetes
    /// API (in-cluster service account, else $KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "WIRETRAIL_KUBERNETES")]
    pub kubernetes: bool,
    /// Kubeconfig file for the Kubernetes API (implies --kubernetes).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Only dissect traffic of pods in these namespaces (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NS,NS")]
    pub namespaces: Vec<String>,
    /// Never dissect traffic of pods in these namespaces (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NS,NS")]
    pub exclude_namespaces: Vec<String>,
    /// Only dissect traffic of pods whose name matches this regex.
    #[arg(long, value_name = "RE")]
    pub pod_regex: Option<String>,
}

impl IdentityArgs {
    /// The resolver (Kubernetes watchers started on the current runtime when asked for, then
    /// the `--identities` file) and the pod filter, if any. `node` selects the pods watched
    /// (`spec.nodeName`).
    pub async fn build(&self, node: &str) -> anyhow::Result<(IdentityResolver, Option<PodFilter>)> {
        let (mut resolver, filter) = self.build_live(node).await?;
        if self.reverse_dns {
            resolver = resolver.with_reverse_dns();
        }
        let Some(path) = &self.identities else {
            return Ok((resolver, filter));
        };
        let map = IdentityMap::load(path)
            .with_context(|| format!("cannot load identities from {}", path.display()))?;
        tracing::info!(addresses = map.len(), file = %path.display(), "identity map loaded");
        Ok((resolver.with_static(map), filter))
    }

    async fn build_live(
        &self,
        node: &str,
    ) -> anyhow::Result<(IdentityResolver, Option<PodFilter>)> {
        let filter = PodFilter::new(
            self.namespaces.clone(),
            self.exclude_namespaces.clone(),
            self.pod_regex.as_deref(),
        )?;
        let filter = (!filter.is_everything()).then_some(filter);
        if !self.kubernetes && self.kubeconfig.is_none() {
            return Ok((IdentityResolver::default(), filter));
        }
        let client = kubernetes::connect(self.kubeconfig.as_deref())
            .await
            .context("--kubernetes")?;
        let watch = KubeWatch::start(client, node);
        if !watch.wait_synced(SYNC_WAIT).await {
            tracing::warn!(
                "Kubernetes API not listed within {}s; addresses stay unresolved until it is",
                SYNC_WAIT.as_secs()
            );
        }
        Ok((watch.resolver(), filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ids: IdentityArgs,
    }

    #[tokio::test]
    async fn flags_build_a_filter_and_errors_are_clear() {
        let cli = Cli::parse_from([
            "x",
            "--namespaces",
            "shop,pay",
            "--exclude-namespaces",
            "kube-system",
            "--pod-regex",
            "^api-",
        ]);
        let (_, filter) = cli.ids.build("node-a").await.unwrap();
        assert!(filter.is_some());
        let (_, filter) = Cli::parse_from(["x"]).ids.build("n").await.unwrap();
        assert!(filter.is_none());
        let bad = Cli::parse_from(["x", "--pod-regex", "("])
            .ids
            .build("n")
            .await;
        assert!(bad.unwrap_err().to_string().contains("--pod-regex"));
        let missing = Cli::parse_from(["x", "--kubeconfig", "/nonexistent/kubeconfig"])
            .ids
            .build("n")
            .await;
        let msg = format!("{:#}", missing.unwrap_err());
        assert!(msg.contains("/nonexistent/kubeconfig"), "{msg}");
    }
}
