//! Installing the shared CRD fixtures into a test control plane.
//!
//! The fixtures are current upstream CRDs; the 1.20 test-bed API server only accepts them after
//! `e2e/testbed/downlevel-crds.py` has rewritten them. The rewrite goes to a temporary directory,
//! never into the repository or the read-only fixtures.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::poll::{Attempt, poll_until};
use crate::testbed::testbed;

/// The field manager of every server-side apply the harness makes.
pub const FIELD_MANAGER: &str = "idp-test";
/// How long all CRDs together may take to become `Established` (~22 s seen for 48 at once).
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(120);
/// How long discovery may keep answering 404 for a group version after that.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent apply requests (the machine has two cores; the API server does the work).
const APPLY_CONCURRENCY: usize = 4;

/// What [`install_crd_fixtures`] installed.
#[derive(Clone, Debug, Default)]
pub struct InstalledCrds {
    /// CRD names, e.g. `helmcharts.helm.cattle.io`, sorted.
    pub names: BTreeSet<String>,
    /// Served group versions, e.g. `helm.cattle.io/v1`, sorted; each answered discovery.
    pub group_versions: BTreeSet<String>,
}

/// Installs every CRD of the shared fixtures (`<shared>/fixtures/crds`, see
/// [`Testbed::crd_fixtures_dir`](crate::Testbed::crd_fixtures_dir)) into the cluster behind
/// `client`.
///
/// Downlevels them with `e2e/testbed/downlevel-crds.py` into a temp dir, applies each with
/// server-side apply (field manager [`FIELD_MANAGER`], forced), waits until each is
/// `Established`, and then retries discovery per group version until every one answers with
/// its resources: right after `Established` some still answer 404 for a few seconds.
///
/// The two halves are public too: [`downlevel_crd_fixtures`] needs no cluster, so
/// [`control_plane_with_crd_fixtures`] runs it while its control plane starts.
pub async fn install_crd_fixtures(client: &Client) -> anyhow::Result<InstalledCrds> {
    let crds = downlevel_crd_fixtures().await?;
    apply_crds(client, &crds).await
}

/// Starts a control plane (without the controller manager) with the shared CRD fixtures
/// installed, downlevelling them while the control plane starts.
pub async fn control_plane_with_crd_fixtures() -> anyhow::Result<(crate::ControlPlane, InstalledCrds)> {
    let (cp, crds) = tokio::join!(crate::ControlPlane::start_without_controller_manager(), downlevel_crd_fixtures());
    let cp = cp.context("the control plane did not start")?;
    let installed = apply_crds(&cp.client(), &crds.context("the CRD fixtures did not downlevel")?).await?;
    Ok((cp, installed))
}

/// Downlevels the shared CRD fixtures (see [`downlevel_crds`]); needs no cluster.
pub async fn downlevel_crd_fixtures() -> anyhow::Result<Vec<Value>> {
    let testbed = testbed();
    downlevel_crds(&testbed.script("downlevel-crds.py"), &testbed.crd_fixtures_dir()).await
}

/// Runs the downlevel script over `fixtures` and parses its output into one JSON value per CRD.
pub async fn downlevel_crds(script: &Path, fixtures: &Path) -> anyhow::Result<Vec<Value>> {
    let tmp =
        tempfile::Builder::new().prefix("idp-test-crds-").tempdir().context("failed to create a temp dir for the downlevelled CRDs")?;
    let out_path = tmp.path().join("crds.yaml");
    let out = std::fs::File::create(&out_path).with_context(|| format!("failed to create {}", out_path.display()))?;
    // spawn + wait_with_output, not output(): tokio's output() would replace the file by a pipe.
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .arg(fixtures)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("failed to run python3 {}", script.display()))?
        .wait_with_output()
        .await
        .with_context(|| format!("failed to wait for python3 {}", script.display()))?;
    ensure!(
        run.status.success(),
        "{} {} failed ({}): {}",
        script.display(),
        fixtures.display(),
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&out_path).with_context(|| format!("failed to read {}", out_path.display()))?;
    let docs = parse_yaml_stream(&text).context("failed to parse the downlevelled CRDs")?;
    ensure!(!docs.is_empty(), "{} holds no CustomResourceDefinition", fixtures.display());
    Ok(docs)
}

/// Parses a `---`-separated YAML stream of trusted, large documents (no size budget).
pub fn parse_yaml_stream(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut options = serde_saphyr::Options::default();
    // CRDs are deep and big (the Prometheus ones hold ~1 MB each); the input is our own.
    options.budget = None;
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Applies `crds` (JSON objects of kind `CustomResourceDefinition`) with server-side apply and
/// waits until they are established and discoverable; see [`install_crd_fixtures`].
pub async fn apply_crds(client: &Client, crds: &[Value]) -> anyhow::Result<InstalledCrds> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied: Vec<CustomResourceDefinition> = futures::stream::iter(crds)
        .map(|crd| {
            let (api, params) = (&api, &params);
            async move {
                let name = crd.pointer("/metadata/name").and_then(Value::as_str).context("a CRD without metadata.name")?;
                api.patch(name, params, &Patch::Apply(crd)).await.with_context(|| format!("failed to apply CRD {name}"))
            }
        })
        .buffer_unordered(APPLY_CONCURRENCY)
        .try_collect()
        .await?;

    let mut installed = InstalledCrds::default();
    let mut expected_resources = Vec::new();
    for crd in &applied {
        let name = crd.metadata.name.clone().unwrap_or_default();
        installed.names.insert(name);
        for version in crd.spec.versions.iter().filter(|v| v.served) {
            let gv = format!("{}/{}", crd.spec.group, version.name);
            expected_resources.push((gv.clone(), crd.spec.names.plural.clone()));
            installed.group_versions.insert(gv);
        }
    }
    wait_established(&api, &installed.names).await?;
    wait_discoverable(client, &expected_resources).await?;
    Ok(installed)
}

/// Argo Workflows' `Workflow` and `WorkflowTemplate` CRDs (`argoproj.io/v1alpha1`,
/// namespaced) the way upstream's "minimal" CRDs (`manifests/base/crds/minimal`) define
/// them: only `metadata` and `spec` required, and `spec` and `status` objects with
/// `x-kubernetes-preserve-unknown-fields`. The shared fixtures have no Argo Workflows
/// CRDs (its chart holds them only as templates), so tests install these instead; being
/// schemaless, they check much less than the real CRDs do: the kind is served and the
/// object is namespaced with a `spec`, but no field inside `spec` is checked.
pub fn argo_workflows_minimal_crds() -> Vec<Value> {
    ["Workflow", "WorkflowTemplate"]
        .into_iter()
        .map(|kind| {
            let singular = kind.to_lowercase();
            let plural = format!("{singular}s");
            let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
            json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.argoproj.io")},
                "spec": {
                    "group": "argoproj.io",
                    "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": singular},
                    "scope": "Namespaced",
                    "versions": [{
                        "name": "v1alpha1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {
                            "type": "object",
                            "required": ["metadata", "spec"],
                            "properties": {
                                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                "metadata": {"type": "object"}, "spec": open, "status": open,
                            },
                        }},
                    }],
                },
            })
        })
        .collect()
}

/// Polls until every CRD in `names` has the condition `Established=True`.
async fn wait_established(api: &Api<CustomResourceDefinition>, names: &BTreeSet<String>) -> anyhow::Result<()> {
    poll_until("the CRDs to become Established", ESTABLISHED_TIMEOUT, || async move {
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            Err(e) => return Ok(Attempt::Retry(format!("listing CRDs failed: {e}"))),
        };
        let established: BTreeSet<String> =
            list.items.iter().filter(|crd| is_established(crd)).filter_map(|crd| crd.metadata.name.clone()).collect();
        let pending: Vec<&str> = names.difference(&established).map(String::as_str).collect();
        Ok(if pending.is_empty() {
            Attempt::Done(())
        } else {
            Attempt::Retry(format!("{} not yet Established: {}", pending.len(), pending.join(", ")))
        })
    })
    .await
}

/// Whether a CRD carries the condition `Established=True`.
pub fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| conds.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}

/// Polls discovery per group version until each lists its expected resource.
async fn wait_discoverable(client: &Client, expected: &[(String, String)]) -> anyhow::Result<()> {
    let pending = std::sync::Mutex::new(expected.to_vec());
    let pending = &pending;
    poll_until("discovery of every CRD group version", DISCOVERY_TIMEOUT, || async move {
        let todo = pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut still = Vec::new();
        for (gv, plural) in todo {
            match client.list_api_group_resources(&gv).await {
                Ok(list) if list.resources.iter().any(|r| r.name == plural) => {}
                Ok(_) => still.push((gv, plural)),
                Err(_) => still.push((gv, plural)),
            }
        }
        let reason = still.iter().map(|(gv, plural)| format!("{gv} ({plural})")).collect::<Vec<_>>().join(", ");
        let done = still.is_empty();
        *pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = still;
        Ok(if done { Attempt::Done(()) } else { Attempt::Retry(format!("not discoverable yet: {reason}")) })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_yaml_stream_and_skips_empty_documents() {
        let docs = parse_yaml_stream("---\na: 1\n---\n---\nb: [x, '=']\n").expect("valid YAML");
        assert_eq!(docs, vec![serde_json::json!({"a": 1}), serde_json::json!({"b": ["x", "="]})]);
    }

    #[test]
    fn established_needs_the_true_condition() {
        let mut crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "xs.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "xs", "kind": "X"}, "versions": []},
            "status": {"conditions": [{"type": "Established", "status": "False"}]}
        }))
        .expect("a valid CRD");
        assert!(!is_established(&crd));
        if let Some(conds) = crd.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            conds[0].status = "True".into();
        }
        assert!(is_established(&crd));
    }
}
