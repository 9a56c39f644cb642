//! Kubernetes auth for External Secrets, against real servers: OpenBao (standing in for
//! Vault; same HTTP API, same Kubernetes auth method) on loopback reviews
//! service-account tokens with the test bed's Kubernetes 1.20 API server (TokenRequest
//! and TokenReview are real; no kubelet is needed for either).

mod common;

use std::collections::BTreeMap;

use common::{Bao, auth_delegator, control_plane_ca, namespace, service_account, token};
use idp_core::secrets::{ESO_AUDIENCE, ESO_ROLES, ESO_SERVICE_ACCOUNT, SEEDS};
use idp_test::{ControlPlane, Need, require};
use idp_vault::{KubernetesAuth, configure_kubernetes_auth, init_and_unseal, seed};

#[tokio::test]
async fn external_secrets_logs_in_with_its_role_and_reads_only_its_paths() {
    let testbed = require!(Need::OpenBao, Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let client = cp.client();
    let bao = Bao::start(&testbed).await.expect("OpenBao starts");
    let keys = init_and_unseal(&bao.vault(), None, None).await.expect("init").keys;
    let root = bao.vault().with_token(&keys.root_token);
    seed(&root, SEEDS, &BTreeMap::new()).await.expect("seed");

    // The token reviewer: a service account allowed to create TokenReviews, as the Vault
    // chart binds Vault's own account.
    namespace(&client, "vault-system").await.expect("namespace");
    service_account(&client, "vault-system", "vault").await.expect("reviewer account");
    auth_delegator(&client, "vault-system", "vault").await.expect("auth-delegator");
    let reviewer = token(&client, "vault-system", "vault", None).await.expect("reviewer token");
    let auth = KubernetesAuth {
        host: cp.server().to_owned(),
        ca_pem: Some(control_plane_ca(cp.kubeconfig()).expect("the API server's CA")),
        token_reviewer_jwt: Some(reviewer),
    };

    let changed = configure_kubernetes_auth(&root, &auth, ESO_ROLES).await.unwrap_or_else(|e| panic!("{e}\n{}", bao.log_tail()));
    assert_eq!(changed.len(), 2 + 2 * ESO_ROLES.len(), "{changed:#?}");
    assert_eq!(changed[0], "enabled the auth method kubernetes/");
    assert!(
        changed.contains(&"wrote role eso-argocd-role".to_owned()) && changed.contains(&"wrote policy eso-backstage".to_owned()),
        "{changed:#?}"
    );
    let again = configure_kubernetes_auth(&root, &auth, ESO_ROLES).await.expect("second run");
    assert_eq!(again, Vec::<String>::new(), "a rerun changes nothing");

    // The roles as Vault holds them.
    for role in ESO_ROLES {
        let name = role.role_name();
        let read = bao_read(&bao, &keys.root_token, &format!("auth/kubernetes/role/{name}")).await;
        assert_eq!(read["data"]["bound_service_account_names"], serde_json::json!([ESO_SERVICE_ACCOUNT]), "{name}");
        assert_eq!(read["data"]["bound_service_account_namespaces"], serde_json::json!([role.namespace]), "{name}");
        assert_eq!(read["data"]["audience"], ESO_AUDIENCE, "{name}");
        assert_eq!(read["data"]["token_ttl"], 86400, "{name}: 24h");
        assert_eq!(read["data"]["token_policies"], serde_json::json!([role.policy_name()]), "{name}");
    }

    for ns in ["argocd", "cicd"] {
        namespace(&client, ns).await.expect("namespace");
        service_account(&client, ns, ESO_SERVICE_ACCOUNT).await.expect("external-secrets account");
    }
    service_account(&client, "argocd", "someone-else").await.expect("another account");

    // External Secrets' token, audience vault, logs in with its namespace's role.
    let eso_argocd = token(&client, "argocd", ESO_SERVICE_ACCOUNT, Some(ESO_AUDIENCE)).await.expect("token");
    let vault_token =
        bao.vault().kubernetes_login("eso-argocd-role", &eso_argocd).await.unwrap_or_else(|e| panic!("{e}\n{}", bao.log_tail()));
    let eso = bao.vault().with_token(&vault_token);
    let admin = eso.kv_get("argocd/admin").await.expect("reads its own path").expect("seeded");
    assert_eq!(admin["username"], "admin");
    let err = eso.kv_get("grafana/admin").await.expect_err("another namespace's path");
    assert_eq!(err.status(), Some(403), "read only its paths: {err}");
    let lookup = bao_read(&bao, &vault_token, "auth/token/lookup-self").await;
    assert!(lookup["data"]["ttl"].as_u64().is_some_and(|ttl| ttl > 86_000 && ttl <= 86_400), "24h: {lookup}");
    assert_eq!(lookup["data"]["meta"]["service_account_namespace"], "argocd");

    // cicd's role reads cicd's paths.
    let eso_cicd = token(&client, "cicd", ESO_SERVICE_ACCOUNT, Some(ESO_AUDIENCE)).await.expect("token");
    let cicd = bao.vault().with_token(&bao.vault().kubernetes_login("eso-cicd-role", &eso_cicd).await.expect("cicd logs in"));
    assert!(cicd.kv_get("sonarqube/monitoring").await.expect("reads").is_some());

    // Negatives: another account of the namespace, the right account of another
    // namespace, and the right account with the API server's own audience are refused.
    let other = token(&client, "argocd", "someone-else", Some(ESO_AUDIENCE)).await.expect("token");
    let err = bao.vault().kubernetes_login("eso-argocd-role", &other).await.expect_err("another account");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("service account name not authorized"), "{err}");
    let err = bao.vault().kubernetes_login("eso-argocd-role", &eso_cicd).await.expect_err("another namespace");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("namespace not authorized"), "{err}");
    let wrong_audience = token(&client, "argocd", ESO_SERVICE_ACCOUNT, None).await.expect("token");
    let err = bao.vault().kubernetes_login("eso-argocd-role", &wrong_audience).await.expect_err("wrong audience");
    assert!(matches!(err.status(), Some(400 | 403)), "{err}");
    assert!(err.to_string().contains("aud"), "the audience is named: {err}");
}

/// `GET /v1/<path>` with `token`, straight from the test (for what the plane does not
/// read itself).
async fn bao_read(bao: &Bao, token: &str, path: &str) -> serde_json::Value {
    use idp_vault::Transport as _;
    let transport = idp_vault::HttpTransport::new(&bao.url()).expect("transport");
    let request = idp_vault::Request {
        method: http::Method::GET,
        path: path.to_owned(),
        token: Some(token.to_owned()),
        content_type: None,
        body: Vec::new(),
    };
    let answer = transport.send(request).await.expect("answer");
    assert_eq!(answer.status, 200, "{path}: {}", String::from_utf8_lossy(&answer.body));
    serde_json::from_slice(&answer.body).expect("JSON")
}
