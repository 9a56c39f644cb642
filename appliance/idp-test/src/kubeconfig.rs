//! Kubeconfig handling for tests: clients from YAML, and pointing a kubeconfig written inside a
//! container (server `https://127.0.0.1:6443`) at the port Docker published on the host.

use anyhow::Context as _;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Builds a client from kubeconfig YAML, using its current context.
pub async fn client_from_yaml(yaml: &str) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::from_yaml(yaml).context("failed to parse the kubeconfig")?;
    client_from(kubeconfig).await
}

/// Builds a client from a parsed kubeconfig, using its current context.
pub async fn client_from(kubeconfig: Kubeconfig) -> anyhow::Result<Client> {
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.context("failed to load the kubeconfig")?;
    Client::try_from(config).context("failed to build a client from the kubeconfig")
}

/// Parses kubeconfig YAML and sets the server of every cluster in it to `server`.
pub fn with_server(yaml: &str, server: &str) -> anyhow::Result<Kubeconfig> {
    let mut kubeconfig = Kubeconfig::from_yaml(yaml).context("failed to parse the kubeconfig")?;
    anyhow::ensure!(!kubeconfig.clusters.is_empty(), "the kubeconfig names no cluster");
    for named in &mut kubeconfig.clusters {
        let cluster = named.cluster.as_mut().with_context(|| format!("cluster {:?} has no settings", named.name))?;
        cluster.server = Some(server.to_string());
    }
    Ok(kubeconfig)
}

/// [`with_server`], serialized back to YAML (for `kubectl --kubeconfig`).
pub fn with_server_yaml(yaml: &str, server: &str) -> anyhow::Result<String> {
    let kubeconfig = with_server(yaml, server)?;
    serde_saphyr::to_string(&kubeconfig).context("failed to serialize the kubeconfig")
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S_STYLE: &str = "apiVersion: v1
kind: Config
clusters:
- name: default
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: Zm9v
users:
- name: default
  user:
    token: abc
contexts:
- name: default
  context:
    cluster: default
    user: default
current-context: default
";

    #[test]
    fn points_every_cluster_at_the_published_port() {
        let yaml = with_server_yaml(K3S_STYLE, "https://127.0.0.1:49153").expect("rewritable");
        let kc = Kubeconfig::from_yaml(&yaml).expect("still a kubeconfig");
        let cluster = kc.clusters[0].cluster.as_ref().expect("cluster settings");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:49153"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Zm9v"));
        assert_eq!(kc.current_context.as_deref(), Some("default"));
    }

    #[test]
    fn refuses_a_kubeconfig_without_clusters() {
        assert!(with_server("apiVersion: v1\nkind: Config\n", "https://x").is_err());
    }
}
