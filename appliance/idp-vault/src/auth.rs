//! Kubernetes auth for External Secrets: the auth method, its config, and one role and
//! policy per namespace with a SecretStore ([`idp_core::secrets::ESO_ROLES`]).

use idp_core::secrets::{
    ESO_AUDIENCE, ESO_SERVICE_ACCOUNT, ESO_TOKEN_TTL, ESO_TOKEN_TTL_SECONDS, EsoRole, IN_CLUSTER_KUBERNETES_HOST, KUBERNETES_AUTH_MOUNT,
};
use serde_json::{Value, json};

use crate::client::Vault;
use crate::error::VaultError;

/// How Vault reaches the API server to review service-account tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct KubernetesAuth {
    /// The API server's URL as Vault reaches it.
    pub host: String,
    /// The API server's CA (PEM). `None` with no [`KubernetesAuth::token_reviewer_jwt`]
    /// either: Vault runs in the cluster and uses its pod's CA and token.
    pub ca_pem: Option<String>,
    /// A token of a service account allowed to create TokenReviews
    /// (`system:auth-delegator`). `None` with no CA: Vault's own pod token.
    pub token_reviewer_jwt: Option<String>,
}

impl std::fmt::Debug for KubernetesAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesAuth")
            .field("host", &self.host)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("token_reviewer_jwt", &self.token_reviewer_jwt.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl KubernetesAuth {
    /// Vault in the cluster: `https://kubernetes.default.svc:443`, with the CA and token
    /// of Vault's own service account (the chart binds it to `system:auth-delegator`).
    pub fn in_cluster() -> KubernetesAuth {
        KubernetesAuth { host: IN_CLUSTER_KUBERNETES_HOST.to_owned(), ca_pem: None, token_reviewer_jwt: None }
    }

    fn uses_pod_identity(&self) -> bool {
        self.ca_pem.is_none() && self.token_reviewer_jwt.is_none()
    }
}

/// Enables the Kubernetes auth method at `auth/kubernetes/`, configures it with `auth`,
/// and writes for each of `roles` (normally [`idp_core::secrets::ESO_ROLES`]) its
/// policy `eso-<ns>` and its role `eso-<ns>-role`: service account `external-secrets`
/// in `<ns>`, audience `vault`, token TTL 24h. `vault` needs the root token.
///
/// Each is read first and written only when it differs, so a rerun changes nothing;
/// the answer lists what was written. Vault never returns the token reviewer JWT, so
/// the config counts as equal when the host, the CA and whether a JWT is set agree.
pub async fn configure_kubernetes_auth(vault: &Vault, auth: &KubernetesAuth, roles: &[EsoRole]) -> Result<Vec<String>, VaultError> {
    let mut changed = Vec::new();
    if enable_auth_method(vault).await? {
        changed.push(format!("enabled the auth method {KUBERNETES_AUTH_MOUNT}/"));
    }

    let config_path = format!("auth/{KUBERNETES_AUTH_MOUNT}/config");
    let current = vault.read("read the Kubernetes auth config", &config_path).await?;
    if !config_matches(current.as_ref().and_then(|v| v.get("data")), auth) {
        let mut body = json!({
            "kubernetes_host": auth.host,
            "disable_local_ca_jwt": !auth.uses_pod_identity(),
        });
        if let Some(ca) = &auth.ca_pem {
            body["kubernetes_ca_cert"] = Value::String(ca.clone());
        }
        if let Some(jwt) = &auth.token_reviewer_jwt {
            body["token_reviewer_jwt"] = Value::String(jwt.clone());
        }
        vault.write("write the Kubernetes auth config", &config_path, body).await?;
        changed.push(format!("configured {config_path} for {}", auth.host));
    }

    for role in roles {
        let policy_name = role.policy_name();
        let policy = role.policy();
        let policy_path = format!("sys/policies/acl/{policy_name}");
        let current = vault.read(&format!("read policy {policy_name}"), &policy_path).await?;
        let current_text = current.as_ref().and_then(|v| v.pointer("/data/policy")).and_then(Value::as_str);
        if current_text != Some(policy.as_str()) {
            vault.write(&format!("write policy {policy_name}"), &policy_path, json!({ "policy": policy })).await?;
            changed.push(format!("wrote policy {policy_name}"));
        }

        let role_name = role.role_name();
        let role_path = format!("auth/{KUBERNETES_AUTH_MOUNT}/role/{role_name}");
        let current = vault.read(&format!("read role {role_name}"), &role_path).await?;
        if !role_matches(current.as_ref().and_then(|v| v.get("data")), role) {
            let body = json!({
                "bound_service_account_names": [ESO_SERVICE_ACCOUNT],
                "bound_service_account_namespaces": [role.namespace],
                "audience": ESO_AUDIENCE,
                "token_policies": [policy_name],
                "token_ttl": ESO_TOKEN_TTL,
            });
            vault.write(&format!("write role {role_name}"), &role_path, body).await?;
            changed.push(format!("wrote role {role_name}"));
        }
    }
    Ok(changed)
}

/// Enables the Kubernetes auth method unless it is there; whether it enabled it.
async fn enable_auth_method(vault: &Vault) -> Result<bool, VaultError> {
    let mount = format!("{KUBERNETES_AUTH_MOUNT}/");
    let methods = vault.read("list the auth methods", "sys/auth").await?.unwrap_or(Value::Null);
    let existing = methods.get("data").and_then(|d| d.get(&mount)).or_else(|| methods.get(&mount));
    if let Some(existing) = existing {
        let kind = existing.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind == "kubernetes" {
            return Ok(false);
        }
        return Err(VaultError::Invalid {
            what: format!("the auth method at {mount} of Vault at {}", vault.endpoint()),
            problem: format!("it is {kind}, not kubernetes"),
        });
    }
    vault.write("enable the Kubernetes auth method", &format!("sys/auth/{KUBERNETES_AUTH_MOUNT}"), json!({ "type": "kubernetes" })).await?;
    Ok(true)
}

/// Whether Vault's config (`data` of `auth/kubernetes/config`) is `auth`'s.
fn config_matches(data: Option<&Value>, auth: &KubernetesAuth) -> bool {
    let Some(data) = data else { return false };
    let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default().trim().to_owned();
    let flag = |key: &str| data.get(key).and_then(Value::as_bool).unwrap_or(false);
    text("kubernetes_host") == auth.host
        && text("kubernetes_ca_cert") == auth.ca_pem.as_deref().unwrap_or_default().trim()
        && flag("disable_local_ca_jwt") != auth.uses_pod_identity()
        && flag("token_reviewer_jwt_set") == auth.token_reviewer_jwt.is_some()
}

/// Whether Vault's role (`data` of `auth/kubernetes/role/<name>`) is what `role` asks.
fn role_matches(data: Option<&Value>, role: &EsoRole) -> bool {
    let Some(data) = data else { return false };
    let list = |key: &str| -> Vec<String> {
        data.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect()).unwrap_or_default()
    };
    list("bound_service_account_names") == [ESO_SERVICE_ACCOUNT]
        && list("bound_service_account_namespaces") == [role.namespace]
        && list("token_policies") == [role.policy_name()]
        && data.get("audience").and_then(Value::as_str) == Some(ESO_AUDIENCE)
        && data.get("token_ttl").and_then(Value::as_u64) == Some(ESO_TOKEN_TTL_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use idp_core::secrets::ESO_ROLES;

    #[test]
    fn a_role_matches_what_vault_reports_for_it() {
        let role = ESO_ROLES[0];
        let data = json!({
            "bound_service_account_names": ["external-secrets"],
            "bound_service_account_namespaces": ["argocd"],
            "audience": "vault",
            "token_policies": ["eso-argocd"],
            "token_ttl": 86400,
            "token_max_ttl": 0,
        });
        assert!(role_matches(Some(&data), &role));
        let mut other = data.clone();
        other["bound_service_account_namespaces"] = json!(["cicd"]);
        assert!(!role_matches(Some(&other), &role));
        let mut other = data.clone();
        other["token_ttl"] = json!(3600);
        assert!(!role_matches(Some(&other), &role));
        assert!(!role_matches(None, &role));
    }

    #[test]
    fn a_config_matches_without_vault_returning_the_jwt() {
        let auth =
            KubernetesAuth { host: "https://127.0.0.1:6443".into(), ca_pem: Some("PEM\n".into()), token_reviewer_jwt: Some("jwt".into()) };
        let data = json!({
            "kubernetes_host": "https://127.0.0.1:6443",
            "kubernetes_ca_cert": "PEM",
            "disable_local_ca_jwt": true,
            "token_reviewer_jwt_set": true,
        });
        assert!(config_matches(Some(&data), &auth));
        assert!(!config_matches(Some(&data), &KubernetesAuth::in_cluster()));
        let in_cluster =
            json!({ "kubernetes_host": IN_CLUSTER_KUBERNETES_HOST, "disable_local_ca_jwt": false, "token_reviewer_jwt_set": false });
        assert!(config_matches(Some(&in_cluster), &KubernetesAuth::in_cluster()));
        let shown = format!("{auth:?}");
        assert!(!shown.contains("jwt\"") && shown.contains("<redacted>"), "{shown}");
    }
}
