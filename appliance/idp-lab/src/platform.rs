//! The platform's bootstrap, as `up` runs it: the phases of [`idp_core::bootstrap`], each
//! component applied by the apply engine (server-side apply, its own apply set in
//! `kube-system`, prune, readiness) and its `readiness` entries waited for, with the
//! steps idp-lab does itself between them (every node Ready, the lab CA Secret, Vault's
//! init, unseal and seeding). Each phase has its own timeout, and a failure names what
//! is not ready; a rerun converges (apply is idempotent, Vault is never initialised twice)
//! and continues from where it stopped.
//!
//! Every component idp-lab applied is recorded for the lab daemon's watchdog
//! (`idp_daemon::record_component`); what Argo CD delivers is Argo CD's to heal.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use idp_core::bootstrap::{Hook, Phase};
use idp_core::catalogue::Catalogue;
use idp_core::objects::{Object, Place};
use idp_core::render::{Item, Rendered, RenderedComponent};
use idp_kube::{ApplyCache, ApplyOptions, Cluster, Inventory};
use serde::Serialize;

use crate::exit::{Failure, KUBE, STATE, TIMEOUT};
use crate::progress::Steps;

/// Where each component's apply set lives (it always exists, before any namespace does).
pub const INVENTORY_NAMESPACE: &str = "kube-system";

/// Where the upstream manifests (CRDs) of a render come from.
pub enum Upstream {
    /// Fetched over HTTPS and checked against their sha256.
    Online,
    /// Read from the bundle (`idp_bundle::read_file`) and checked against their sha256.
    Offline {
        /// The bundle: a `bundle create` tar, or its OCI layout as a directory.
        bundle: PathBuf,
    },
}

/// What the bootstrap needs besides the cluster.
pub struct Install<'a> {
    /// The lab.
    pub lab: &'a str,
    /// Its state directory (the watchdog's component records).
    pub dir: PathBuf,
    /// Its state store (Vault's keys).
    pub store: idp_state::StateStore,
    /// The lab CA (the PKI's issuer signs with it).
    pub ca: Option<&'a idp_edge::LabCa>,
    /// The catalogue (components' namespaces and readiness entries).
    pub catalogue: &'a Catalogue,
    /// The render.
    pub rendered: &'a Rendered,
    /// Where upstream manifests come from.
    pub upstream: Upstream,
    /// How long each phase may take.
    pub phase_timeout: Duration,
}

/// What one phase did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseResult {
    /// Its name.
    pub name: String,
    /// Its components.
    pub components: Vec<String>,
    /// Objects applied (created or changed).
    pub changed: usize,
    /// How long it took.
    pub seconds: f64,
}

/// What the bootstrap did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallResult {
    /// Each phase, in order.
    pub phases: Vec<PhaseResult>,
    /// Whether this run initialised Vault (a rerun never does).
    pub vault_initialised: bool,
}

/// `up`'s platform: the render for this lab (its registry on its network's gateway), the
/// charts and stack artifacts pushed to the lab registry, then the bootstrap.
pub async fn up(
    lab: &crate::lab::Lab,
    settings: &idp_core::settings::Settings,
    plan: &idp_core::cluster::ClusterPlan,
    kubeconfig: &str,
    offline: Option<&crate::offline::Offline>,
    steps: &mut Steps,
) -> Result<InstallResult, Failure> {
    let config = &lab.ctx.config;
    let vars = idp_core::render::Vars::new(config, &settings.network).with_gateway(plan.network.gateway);
    // A lab whose platform was up once renders its final policies from the start.
    let installed_before = lab.dir().join(INSTALLED_FILE).is_file();
    let render = |vars: &idp_core::render::Vars| {
        idp_core::render::render(config, &lab.ctx.catalogue, vars)
            .map_err(|e| Failure::new(crate::exit::INTERNAL, format!("the embedded platform does not render: {e}")))
    };
    let rendered = if installed_before { render(&vars.clone().after_install())? } else { render(&vars)? };
    let registry = format!("http://{}", idp_core::render::registry_address(plan.network.gateway));
    steps.start("registry: the platform's charts and stacks");
    let pushed = match publish(&registry, config, &lab.ctx.catalogue, &rendered, offline, steps).await {
        Ok(pushed) => pushed,
        Err(e) => {
            steps.failed("registry");
            return Err(e);
        }
    };
    steps.done(&format!("registry: {pushed}"));
    let cluster = Cluster::from_kubeconfig(kubeconfig, None).await.map_err(|e| Failure::new(KUBE, e.to_string()))?;
    let ca = crate::lab::lab_ca(&lab.name, &lab.dir(), &settings.network.dns_suffix, false)?;
    let install_plan = Install {
        lab: &lab.name,
        dir: lab.dir(),
        store: lab.store.clone(),
        ca: Some(&ca),
        catalogue: &lab.ctx.catalogue,
        rendered: &rendered,
        upstream: offline.map_or(Upstream::Online, |o| Upstream::Offline { bundle: o.bundle.clone() }),
        phase_timeout: Duration::from_secs(config.timeouts.component),
    };
    let mut result = install(&cluster, &install_plan, steps).await?;
    if !installed_before {
        // Every stack is up: what waits for that (the namespace-label policy's Enforce) is
        // delivered now, as new stack artifacts the Applications follow.
        let after = render(&vars.after_install())?;
        let mut cache = ApplyCache::default();
        let deadline = Instant::now() + install_plan.phase_timeout;
        let began = Instant::now();
        let mut changed = Vec::new();
        let final_plan = Install { rendered: &after, ..install_plan };
        for component in &after.components {
            let before = rendered.components.iter().find(|c| c.name == component.name).and_then(RenderedComponent::artifact);
            let Some(artifact) = component.artifact() else { continue };
            if before.as_ref().map(|a| &a.tag) == Some(&artifact.tag) {
                continue;
            }
            steps.start(&format!("after install: {}", component.name));
            idp_bundle::publish::publish_stack(&registry, &artifact).await.map_err(|e| {
                Failure::new(KUBE, format!("failed to push {} to {registry}: {}", artifact.repository, idp_core::diag::chain(&e)))
            })?;
            apply_component(&cluster, &final_plan, component, deadline, &mut cache).await?;
            changed.push(component.name.clone());
        }
        if !changed.is_empty() {
            steps.done(&format!(
                "after install in {}: {} (the namespace-label policy enforces now)",
                crate::progress::seconds(began.elapsed()),
                changed.join(", ")
            ));
            result.phases.push(PhaseResult {
                name: "after-install".into(),
                components: changed,
                changed: 1,
                seconds: began.elapsed().as_secs_f64(),
            });
        }
        crate::lab::write_private(&lab.dir().join(INSTALLED_FILE), b"{\"installed\": true}\n")?;
    }
    Ok(result)
}

/// The marker, in the lab's state directory, of a platform that was up once.
pub const INSTALLED_FILE: &str = "platform-installed.json";

/// Runs the bootstrap of `install` on `cluster`, printing a line per phase.
pub async fn install(cluster: &Cluster, install: &Install<'_>, steps: &mut Steps) -> Result<InstallResult, Failure> {
    let phases = idp_core::bootstrap::phases(install.rendered, install.catalogue);
    let mut result = InstallResult { phases: Vec::new(), vault_initialised: false };
    let mut cache = ApplyCache::default();
    for phase in &phases {
        let began = Instant::now();
        let deadline = began + install.phase_timeout;
        steps.start(&format!("{}: {}", phase.name, names(phase)));
        let changed = match run_phase(cluster, install, phase, deadline, &mut cache, &mut result, steps).await {
            Ok(changed) => changed,
            Err(e) => {
                steps.failed(&format!("{}: {}", phase.name, names(phase)));
                return Err(e);
            }
        };
        steps.done(&format!("{} in {}: {}", phase.name, crate::progress::seconds(began.elapsed()), names(phase)));
        result.phases.push(PhaseResult {
            name: phase.name.to_owned(),
            components: phase.steps.iter().map(|s| s.component.clone()).collect(),
            changed,
            seconds: began.elapsed().as_secs_f64(),
        });
    }
    Ok(result)
}

fn names(phase: &Phase) -> String {
    phase.steps.iter().map(|s| s.component.as_str()).collect::<Vec<_>>().join(", ")
}

async fn run_phase(
    cluster: &Cluster,
    install: &Install<'_>,
    phase: &Phase,
    deadline: Instant,
    cache: &mut ApplyCache,
    result: &mut InstallResult,
    steps: &mut Steps,
) -> Result<usize, Failure> {
    let mut changed = 0;
    for step in &phase.steps {
        let Some(rendered) = install.rendered.components.iter().find(|c| c.name == step.component) else { continue };
        if let Some(hook) = step.before {
            run_hook(cluster, install, hook, deadline, result, steps).await?;
        }
        changed += apply_component(cluster, install, rendered, deadline, cache)
            .await
            .map_err(|e| Failure::new(e.code, format!("the platform's {} phase is not ready: {}", phase.name, e.message)))?;
        if let Some(c) = install.catalogue.components.iter().find(|c| c.name == step.component)
            && !c.readiness.is_empty()
        {
            let remaining = deadline.saturating_duration_since(Instant::now());
            cluster.wait_for_readiness(&c.readiness, &c.namespace, remaining, &|_, _| {}).await.map_err(|e| not_ready(phase, &e))?;
        }
        if let Some(hook) = step.after {
            run_hook(cluster, install, hook, deadline, result, steps).await?;
        }
    }
    Ok(changed)
}

/// A phase that did not get ready: what is not, and how to go on.
fn not_ready(phase: &Phase, e: &idp_kube::KubeError) -> Failure {
    let code = match e {
        idp_kube::KubeError::NotReadyInTime { .. } | idp_kube::KubeError::NotServed { .. } => TIMEOUT,
        _ => KUBE,
    };
    Failure::new(code, format!("the platform's {} phase is not ready: {e}", phase.name))
}

/// Applies one component's objects (its own apply set, pruned) and waits for them.
async fn apply_component(
    cluster: &Cluster,
    install: &Install<'_>,
    rendered: &RenderedComponent,
    deadline: Instant,
    cache: &mut ApplyCache,
) -> Result<usize, Failure> {
    let namespace = install.catalogue.components.iter().find(|c| c.name == rendered.name).map(|c| c.namespace.clone());
    let mut objects = Vec::new();
    let source = format!("component {}", rendered.name);
    for item in &rendered.items {
        let value = match item {
            Item::Object(value) => value.clone(),
            Item::Reference { url, sha256, .. } => {
                let text = upstream(&install.upstream, url, sha256).await?;
                let docs = idp_core::yaml::parse_documents(&text)
                    .map_err(|e| Failure::new(KUBE, format!("{url} (sha256 {sha256}) does not parse: {e}")))?;
                for (i, doc) in docs.into_iter().enumerate() {
                    objects.push(Object { value: doc, place: Place { source: url.clone(), document: i + 1, item: None }, wave: None });
                }
                continue;
            }
        };
        let document = objects.len() + 1;
        objects.push(Object { value, place: Place { source: source.clone(), document, item: None }, wave: None });
    }
    if objects.is_empty() {
        return Ok(0);
    }
    let mut options = ApplyOptions::new(install.lab, &rendered.name);
    if let Some(ns) = &namespace {
        options.namespace = ns.clone();
    }
    options.inventory = Some(Inventory { name: format!("idp-lab-{}", rendered.name), namespace: INVENTORY_NAMESPACE.into() });
    options.prune = true;
    options.wait = true;
    options.timeout = deadline.saturating_duration_since(Instant::now());
    let values: Vec<serde_json::Value> = objects.iter().map(|o| o.value.clone()).collect();
    let report = cluster.apply(objects, &options, cache, &|_| {}).await.map_err(|e| {
        let code = match e {
            idp_kube::KubeError::NotReadyInTime { .. } => TIMEOUT,
            _ => KUBE,
        };
        Failure::new(code, format!("component {}: {e}", rendered.name))
    })?;
    // What idp-lab applied, the watchdog watches for drift (and heals).
    let watched = idp_daemon::WatchedComponent {
        component: rendered.name.clone(),
        namespace: options.namespace.clone(),
        inventory: options.inventory.as_ref().map(|i| (i.name.clone(), i.namespace.clone())),
        objects: values,
        heal: true,
    };
    idp_daemon::record_component(&install.dir, &watched).map_err(crate::daemon::failure)?;
    Ok(report.changed())
}

/// The text of an upstream manifest, checked against `sha256` (unless `unverified`).
async fn upstream(from: &Upstream, url: &str, sha256: &str) -> Result<String, Failure> {
    let expected = (sha256 != "unverified").then_some(sha256);
    let bytes = match from {
        Upstream::Offline { bundle } => {
            let (path, file, pinned) = (bundle.clone(), url.to_owned(), expected.map(str::to_owned));
            tokio::task::spawn_blocking(move || idp_bundle::read_file(&path, &file, pinned.as_deref()))
                .await
                .map_err(|e| Failure::new(crate::exit::INTERNAL, format!("reading {url} from the bundle: {e}")))?
                .map_err(|e| {
                    // The bundle was checked for images before anything was made; an
                    // upstream file it lacks or holds other bytes of is the same refusal.
                    let code = if matches!(e, idp_bundle::BundleError::Io { .. }) { crate::exit::IO } else { crate::exit::PREFLIGHT };
                    Failure::new(code, idp_core::diag::chain(&e))
                })?
        }
        Upstream::Online => {
            let client = idp_bundle::Client::new().map_err(|e| Failure::new(KUBE, e.to_string()))?;
            let mut bytes = Vec::new();
            client
                .fetch(url, expected, &mut bytes)
                .await
                .map_err(|e| Failure::new(crate::exit::PREFLIGHT, format!("failed to fetch {url}: {}", idp_core::diag::chain(&e))))?;
            bytes
        }
    };
    String::from_utf8(bytes).map_err(|_| Failure::new(KUBE, format!("{url} is not UTF-8 text")))
}

async fn run_hook(
    cluster: &Cluster,
    install: &Install<'_>,
    hook: Hook,
    deadline: Instant,
    result: &mut InstallResult,
    steps: &mut Steps,
) -> Result<(), Failure> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    match hook {
        Hook::NodesReady => nodes_ready(cluster, remaining).await,
        Hook::LabCaSecret => {
            let Some(ca) = install.ca else { return Ok(()) };
            let pair = ca.for_cluster_issuer().map_err(|e| Failure::new(crate::exit::IO, e.to_string()))?;
            let labels = BTreeMap::from([("app.kubernetes.io/managed-by".to_owned(), "idp-lab".to_owned())]);
            let data = BTreeMap::from([
                ("tls.crt".to_owned(), pair.cert_pem.clone().into_bytes()),
                ("tls.key".to_owned(), pair.key_pem.clone().into_bytes()),
                ("ca.crt".to_owned(), pair.cert_pem.into_bytes()),
            ]);
            cluster
                .apply_secret("cert-manager", &format!("{}-ca-secret", install.lab), &labels, &data)
                .await
                .map_err(|e| Failure::new(KUBE, format!("the lab CA Secret: {e}")))
        }
        Hook::VaultInit => {
            let initialised = vault_init(cluster, install, remaining).await?;
            if initialised {
                steps.detail("Vault initialised (its keys are in the lab's state and Secret vault-system/vault-init-keys)");
            }
            result.vault_initialised |= initialised;
            Ok(())
        }
    }
}

/// Waits until every node of the cluster is Ready.
async fn nodes_ready(cluster: &Cluster, timeout: Duration) -> Result<(), Failure> {
    let began = Instant::now();
    loop {
        let nodes = cluster.nodes().await.map_err(|e| Failure::new(KUBE, e.to_string()))?;
        let waiting: Vec<String> = nodes
            .iter()
            .filter(|n| !n.ready)
            .map(|n| format!("{} ({})", n.name, n.not_ready_because.clone().unwrap_or_else(|| "NotReady".into())))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if began.elapsed() >= timeout {
            return Err(Failure::new(TIMEOUT, format!("nodes not Ready after {}s: {}", timeout.as_secs(), waiting.join(", "))));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Vault initialised (once), unsealed, its keys kept, Kubernetes auth configured and every
/// seed written; whether it was initialised now.
async fn vault_init(cluster: &Cluster, install: &Install<'_>, timeout: Duration) -> Result<bool, Failure> {
    use idp_core::secrets::{ESO_ROLES, SEEDS, VaultKeys};
    let store = install.store.clone();
    let known = tokio::task::spawn_blocking(move || store.get::<VaultKeys>(idp_state::VAULT_KEYS_RECORD))
        .await
        .map_err(|e| Failure::new(STATE, e.to_string()))?
        .map_err(crate::context::state_failure)?;
    let vault = idp_vault::Vault::in_lab(cluster);
    let began = Instant::now();
    let outcome = loop {
        match idp_vault::init_and_unseal(&vault, Some(cluster), known.as_ref()).await {
            Ok(outcome) => break outcome,
            // Keys made now but not written to the cluster: keep them before anything else.
            Err(idp_vault::VaultError::KeysNotStored { keys, source, .. }) => {
                keep_keys(&install.store, &keys).await?;
                return Err(Failure::new(
                    KUBE,
                    format!(
                        "Vault was initialised, but its keys' Secret was not written: {source}; they are in the lab's state, and a rerun of `idp-lab up` writes the Secret"
                    ),
                ));
            }
            Err(e) if e.is_transport() && began.elapsed() < timeout => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => return Err(Failure::new(KUBE, format!("Vault: {}", idp_core::diag::chain(&e)))),
        }
    };
    if known.as_ref() != Some(&outcome.keys) {
        keep_keys(&install.store, &outcome.keys).await?;
    }
    let root = vault.with_token(&outcome.keys.root_token);
    idp_vault::configure_kubernetes_auth(&root, &idp_vault::KubernetesAuth::in_cluster(), ESO_ROLES)
        .await
        .map_err(|e| Failure::new(KUBE, format!("Vault's Kubernetes auth: {}", idp_core::diag::chain(&e))))?;
    idp_vault::seed(&root, SEEDS, &BTreeMap::new())
        .await
        .map_err(|e| Failure::new(KUBE, format!("seeding Vault: {}", idp_core::diag::chain(&e))))?;
    Ok(outcome.initialised)
}

async fn keep_keys(store: &idp_state::StateStore, keys: &idp_core::secrets::VaultKeys) -> Result<(), Failure> {
    let (store, keys) = (store.clone(), keys.clone());
    tokio::task::spawn_blocking(move || store.put(idp_state::VAULT_KEYS_RECORD, &keys))
        .await
        .map_err(|e| Failure::new(STATE, e.to_string()))?
        .map_err(crate::context::state_failure)
}

#[cfg(test)]
mod tests;

/// Pushes what Argo CD (and, offline, the helm-controller) installs from the lab registry:
/// the charts (offline every chart of the lock's selection, copied from the bundle the
/// registry serves; online the charts of Argo CD's components, downloaded and checked
/// against the lock), then each component's stack artifact; what it did, in words.
async fn publish(
    registry: &str,
    config: &idp_core::config::Config,
    catalogue: &Catalogue,
    rendered: &Rendered,
    offline: Option<&crate::offline::Offline>,
    steps: &mut Steps,
) -> Result<String, Failure> {
    use idp_core::lock::{Artifact, Lock};
    let failed = |what: &str, e: &dyn std::error::Error| {
        Failure::new(KUBE, format!("failed to push {what} to the lab registry {registry}: {}", idp_core::diag::chain(e)))
    };
    let lock = Lock::embedded().map_err(|e| Failure::new(crate::exit::INTERNAL, format!("the embedded lock: {e}")))?;
    let entries = lock.for_profile(config, catalogue);
    let gitops: Vec<&str> = catalogue
        .enabled(&config.stacks)
        .filter(|c| c.delivery == idp_core::catalogue::Delivery::Gitops)
        .filter_map(|c| c.chart.as_ref().map(|ch| ch.name.as_str()))
        .collect();
    let (mut charts, mut stacks, mut sent) = (0, 0, 0);
    let client = idp_bundle::Client::new().map_err(|e| Failure::new(KUBE, e.to_string()))?;
    for entry in &entries {
        let Artifact::Chart(chart) = entry.artifact else { continue };
        let published = match offline {
            Some(_) => {
                let from = idp_bundle::create::chart_ref_name(&chart.repository, &chart.name, &chart.version)
                    .map_err(|e| failed(&chart.name, &e))?;
                idp_bundle::publish::copy_chart_into_local(registry, &from, &chart.name, &chart.version)
                    .await
                    .map_err(|e| failed(&chart.name, &e))?
            }
            None if !gitops.contains(&chart.name.as_str()) => continue,
            None if chart.digest.is_none() && !chart.is_oci() => {
                // The lock pins no digest yet (`idp-lab lock update` resolves it): the package is
                // checked against the repository's own index only.
                steps.detail(&format!(
                    "chart {} {} is unverified in the lock: checked against its repository's index only",
                    chart.name, chart.version
                ));
                let found = client.find_chart(&chart.repository, &chart.name, &chart.version).await.map_err(|e| failed(&chart.name, &e))?;
                let mut package = Vec::new();
                client.download_chart(&found, None, &mut package).await.map_err(|e| failed(&chart.name, &e))?;
                idp_bundle::publish::publish_chart(registry, &chart.name, &chart.version, package.into())
                    .await
                    .map_err(|e| failed(&chart.name, &e))?
            }
            None => {
                idp_bundle::publish::publish_chart_from_repository(&client, registry, chart).await.map_err(|e| failed(&chart.name, &e))?
            }
        };
        charts += 1;
        sent += usize::from(published.sent);
    }
    for component in &rendered.components {
        let Some(artifact) = component.artifact() else { continue };
        let published = idp_bundle::publish::publish_stack(registry, &artifact).await.map_err(|e| failed(&artifact.repository, &e))?;
        stacks += 1;
        sent += usize::from(published.sent);
    }
    Ok(format!("{charts} charts and {stacks} stack artifacts in {registry} ({sent} pushed now, the rest already there)"))
}

#[cfg(test)]
mod upstream_tests {
    //! An offline lab's upstream manifests come from its bundle; one it lacks is refused
    //! as the preflight refuses missing images. The bytes themselves are tested by
    //! idp-bundle's `tests/read_file.rs` and `tests/render_bundle.rs` (`render --bundle`).

    use super::{Upstream, upstream};

    const URL: &str =
        "https://raw.githubusercontent.com/kubernetes-sigs/gateway-api/v1.2.1/config/crd/standard/gateway.networking.k8s.io_gateways.yaml";
    const SHA256: &str = "9aea7ae080dfe9c25a814d3d14eed28f335d28de3cbdc00a0351e0e99cb3bf06";

    #[tokio::test]
    async fn an_offline_upstream_manifest_is_read_from_the_bundle_or_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A real bundle of nothing, as `bundle create --no-lock` makes it.
        let bundle = dir.path().join("empty.tar");
        let options = idp_bundle::CreateOptions { out: bundle.clone(), platforms: vec!["linux/amd64".into()], allow_unverified: false };
        idp_bundle::create(&idp_bundle::Client::new().expect("client"), &[], &options, &mut |_| {}).await.expect("an empty bundle");
        let e = upstream(&Upstream::Offline { bundle: bundle.clone() }, URL, SHA256).await.expect_err("the bundle lacks it");
        assert_eq!(e.code, crate::exit::PREFLIGHT, "{}", e.message);
        assert!(e.message.contains(URL) && e.message.contains("idp-lab bundle create"), "{}", e.message);
        let e = upstream(&Upstream::Offline { bundle: dir.path().join("none.tar") }, URL, SHA256).await.expect_err("no bundle");
        assert_eq!(e.code, crate::exit::IO, "{}", e.message);
    }
}
