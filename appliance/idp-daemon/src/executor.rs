//! The daemon's playbook executor: every action but `webhook` (which the engine posts
//! itself), done with the planes the daemon composes.
//!
//! | action | how |
//! |---|---|
//! | `reapply` | server-side apply of one object of a recorded component ([`crate::components::COMPONENTS_DIR`]), as `apply` sent it (labels, apply set), without pruning the rest |
//! | `rollout-restart`, `sync-application`, `refresh-external-secret`, `submit-workflow` | the Kubernetes plane (`idp_kube::actions`) |
//! | `unseal-vault` | `idp_vault::unseal_with_kept_keys`, through the API server's service proxy, with the keys of the lab's state store (else Secret `vault-system/vault-init-keys`) |
//! | `start-node` | the provisioning plane starts the lab's stopped node container |
//!
//! The cluster is the one of the daemon's last start or reload; before there is one, the
//! Kubernetes actions fail saying so.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use idp_core::config::{Action, ObjectRef};
use idp_core::objects::Identity;
use idp_core::secrets::VaultKeys;
use idp_kube::Cluster;
use idp_watchdog::Cause;
use idp_watchdog::playbook::{ActionError, Executor};

/// The daemon's playbook engine.
pub(crate) type LabEngine = idp_watchdog::Engine<LabExecutor>;

/// Does the playbooks' actions for the daemon of one lab.
#[derive(Clone)]
pub(crate) struct LabExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    lab: String,
    cluster: RwLock<Option<Cluster>>,
}

impl LabExecutor {
    /// The executor of the lab whose state directory is `dir`; no cluster yet.
    pub(crate) fn new(dir: &Path, lab: &str) -> LabExecutor {
        LabExecutor { shared: Arc::new(Shared { dir: dir.to_owned(), lab: lab.to_owned(), cluster: RwLock::new(None) }) }
    }

    /// The cluster the Kubernetes actions use from now on (the daemon's start and reloads).
    pub(crate) fn set_cluster(&self, cluster: Cluster) {
        *self.shared.cluster.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cluster);
    }

    fn cluster(&self) -> Result<Cluster, ActionError> {
        self.shared
            .cluster
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| "the daemon has no cluster yet: the lab has no kubeconfig (`idp-lab up` writes it)".into())
    }

    /// Re-applies one object of a recorded component: `object` by reference, or the one
    /// a drift names (`Kind.group namespace/name` of `component`).
    async fn reapply(&self, target: Target<'_>) -> Result<String, ActionError> {
        let cluster = self.cluster()?;
        let components = crate::components::recorded_components(&self.shared.dir, &self.shared.lab);
        for component in components {
            if let Target::Drifted { component: name, .. } = target
                && name != component.name
            {
                continue;
            }
            let watched = cluster.watched(component.objects.clone(), &component.options).await?;
            let found = watched.members().iter().position(|m| match target {
                Target::Ref(o) => refers_to(o, &m.identity),
                Target::Drifted { object, .. } => m.object == object,
            });
            if let Some(index) = found {
                let object = watched.members()[index].object.clone();
                watched.apply_member(&cluster, index).await?;
                return Ok(format!("re-applied {object} of component {}", component.name));
            }
        }
        Err(match target {
            Target::Ref(o) => format!("no recorded component has {o}: only what idp-lab applied can be re-applied"),
            Target::Drifted { component, object } => format!("component {component} has no {object} any more"),
        }
        .into())
    }

    async fn unseal(&self) -> Result<String, ActionError> {
        let cluster = self.cluster()?;
        let store = idp_state::StateStore::in_lab_dir(&self.shared.dir);
        let known = tokio::task::spawn_blocking(move || store.get::<VaultKeys>(idp_state::VAULT_KEYS_RECORD)).await??;
        let vault = idp_vault::Vault::in_lab(&cluster);
        Ok(match idp_vault::unseal_with_kept_keys(&vault, Some(&cluster), known.as_ref()).await? {
            idp_vault::Unseal::Unsealed => format!("unsealed Vault at {}", vault.endpoint()),
            idp_vault::Unseal::AlreadyUnsealed => format!("Vault at {} was unsealed already", vault.endpoint()),
        })
    }

    async fn start_node(&self, node: &str) -> Result<String, ActionError> {
        let engine = idp_provision::Engine::connect().await?;
        Ok(match engine.start_stopped_node(&self.shared.lab, node).await? {
            true => format!("started node {node}"),
            false => format!("node {node} runs already"),
        })
    }
}

/// What a `reapply` re-applies.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// An object the playbook names.
    Ref(&'a ObjectRef),
    /// The object a drift names.
    Drifted { component: &'a str, object: &'a str },
}

/// Whether `o` (`Kind/namespace/name`, no group) names `identity`.
fn refers_to(o: &ObjectRef, identity: &Identity) -> bool {
    o.kind == identity.kind && o.name == identity.name && o.namespace.as_deref().unwrap_or("") == identity.namespace
}

impl Executor for LabExecutor {
    async fn execute(&self, action: &Action, cause: &Cause) -> Result<String, ActionError> {
        match action {
            Action::Webhook { .. } => Err("webhooks are posted by the playbook engine, not the executor".into()),
            Action::Reapply { object: Some(o) } => self.reapply(Target::Ref(o)).await,
            Action::Reapply { object: None } => match cause {
                Cause::Drift { component, object, .. } => self.reapply(Target::Drifted { component, object }).await,
                _ => Err("reapply names no object, and its trigger is not a drift: give `object = \"Kind/namespace/name\"`".into()),
            },
            Action::RolloutRestart { object } => Ok(self.cluster()?.rollout_restart(object).await?),
            Action::SyncApplication { application } => Ok(self.cluster()?.sync_application(application).await?),
            Action::RefreshExternalSecret { external_secret } => Ok(self.cluster()?.refresh_external_secret(external_secret).await?),
            Action::SubmitWorkflow { template, parameters } => {
                let name = self.cluster()?.submit_workflow(template, parameters).await?;
                Ok(format!("submitted Workflow {}/{name} from WorkflowTemplate {template}", template.namespace))
            }
            Action::UnsealVault => self.unseal().await,
            Action::StartNode { node: Some(node) } => self.start_node(node).await,
            Action::StartNode { node: None } => match cause {
                Cause::NodeStopped { node } => self.start_node(node).await,
                _ => Err("start-node names no node, and its trigger is not a stopped node: give `node = \"NAME\"`".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_names_an_object_by_kind_namespace_and_name() {
        let identity = |ns: &str| Identity { group: "apps".into(), kind: "Deployment".into(), namespace: ns.into(), name: "web".into() };
        let o = ObjectRef::parse("Deployment/apps/web").expect("valid");
        assert!(refers_to(&o, &identity("apps")));
        assert!(!refers_to(&o, &identity("other")), "another namespace");
        assert!(!refers_to(&ObjectRef::parse("StatefulSet/apps/web").expect("valid"), &identity("apps")), "another kind");
        assert!(!refers_to(&ObjectRef::parse("Deployment/apps/api").expect("valid"), &identity("apps")), "another name");
        let cluster_scoped = Identity { group: String::new(), kind: "Namespace".into(), namespace: String::new(), name: "apps".into() };
        assert!(refers_to(&ObjectRef::parse("Namespace/apps").expect("valid"), &cluster_scoped));
        assert!(!refers_to(&ObjectRef::parse("Namespace/x/apps").expect("valid"), &cluster_scoped));
    }

    #[tokio::test]
    async fn actions_that_name_nothing_and_have_no_such_trigger_say_what_to_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let executor = LabExecutor::new(dir.path(), "demo");
        let alert = Cause::VaultSealed;
        let e = executor.execute(&Action::Reapply { object: None }, &alert).await.expect_err("nothing to reapply");
        assert!(e.to_string().contains("object = "), "{e}");
        let e = executor.execute(&Action::StartNode { node: None }, &alert).await.expect_err("no node");
        assert!(e.to_string().contains("node = "), "{e}");
        let o = ObjectRef::parse("Deployment/apps/web").expect("valid");
        let e = executor.execute(&Action::RolloutRestart { object: o }, &alert).await.expect_err("no cluster");
        assert!(e.to_string().contains("no cluster yet"), "{e}");
    }
}
