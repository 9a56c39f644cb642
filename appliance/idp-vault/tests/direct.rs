//! The secrets plane over the direct transport, against a real Vault-API server: OpenBao
//! (`bao server`, raft storage, on loopback) stands in for Vault. Keys are kept in a
//! Secret on the test bed's Kubernetes 1.20 API server. No mocks.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Bao, namespace, read_seeded};
use idp_core::secrets::{KEYS_SECRET, SEEDS, VAULT_NAMESPACE, VaultKeys};
use idp_kube::Cluster;
use idp_test::{ControlPlane, Need, require};
use idp_vault::{HttpTransport, Request, SeedAction, Transport as _, Unseal, VaultError, init_and_unseal, seed, unseal_if_sealed};

/// Base64 of 32 bytes: 44 characters of the standard alphabet with one `=`.
fn is_base64_of_32_bytes(s: &str) -> bool {
    s.len() == 44 && s.ends_with('=') && s[..43].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[tokio::test]
async fn init_unseal_and_seed_once_and_a_rerun_changes_nothing() {
    let testbed = require!(Need::OpenBao, Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    namespace(&cp.client(), VAULT_NAMESPACE).await.expect("namespace vault-system");
    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("cluster");
    let bao = Bao::start(&testbed).await.expect("OpenBao starts");
    let vault = bao.vault();

    let health = vault.health().await.expect("health");
    assert!(!health.initialized && !health.is_ready(), "{health:?}");
    let err = vault.wait_ready(Duration::from_secs(1)).await.expect_err("not initialised is not ready");
    assert!(err.to_string().contains("not initialised"), "{err}");

    // First run: initialise, keep the keys in the Secret, unseal.
    let first = init_and_unseal(&vault, Some(&cluster), None).await.unwrap_or_else(|e| panic!("{e}\n{}", bao.log_tail()));
    assert!(first.initialised && first.unsealed && first.stored_in_cluster, "{first:?}");
    assert_eq!(first.keys.unseal_key.len(), 64, "one hex key share");
    let stored = cluster.secret_data(VAULT_NAMESPACE, KEYS_SECRET).await.expect("read").expect("the keys' Secret exists");
    assert_eq!(stored.keys().map(String::as_str).collect::<Vec<_>>(), ["root-token", "unseal-key"]);
    assert_eq!(stored["unseal-key"], first.keys.unseal_key.as_bytes());
    assert_eq!(stored["root-token"], first.keys.root_token.as_bytes());
    let health = vault.wait_ready(Duration::from_secs(10)).await.expect("ready after init");
    assert!(health.is_ready() && !health.version.is_empty(), "{health:?}");
    let status = vault.seal_status().await.expect("seal status");
    assert_eq!((status.shares, status.threshold), (1, 1), "one share, threshold one");

    // Seeding, with some inputs given (a blank one counts as not given).
    let root = vault.with_token(&first.keys.root_token);
    let inputs = BTreeMap::from([
        ("grafana_admin_password".to_owned(), "grafana-from-config".to_owned()),
        ("github_token".to_owned(), "  ".to_owned()),
    ]);
    let report = seed(&root, SEEDS, &inputs).await.unwrap_or_else(|e| panic!("{e}\n{}", bao.log_tail()));
    assert!(report.mounted, "the KV v2 engine is mounted");
    assert_eq!(report.values.len(), SEEDS.len());
    assert_eq!(report.written(), SEEDS.len(), "every value is new: {report:?}");
    let action = |path: &str, key: &str| report.values.iter().find(|v| v.path == path && v.key == key).map(|v| v.action);
    assert_eq!(action("argocd/admin", "plainPassword"), Some(SeedAction::Generated));
    assert_eq!(action("argocd/admin", "admin.password"), Some(SeedAction::Hashed));
    assert_eq!(action("grafana/admin", "admin-password"), Some(SeedAction::Given));
    assert_eq!(action("backstage/app", "githubToken"), Some(SeedAction::Fixed));

    let before = read_seeded(&root).await.expect("every seeded path reads back");
    let argocd = &before["argocd/admin"];
    assert!(is_base64_of_32_bytes(&argocd["plainPassword"]), "{:?}", argocd["plainPassword"].len());
    assert_eq!(argocd["username"], "admin");
    assert!(argocd["admin.password"].starts_with("$2b$10$"), "bcrypt, cost 10");
    assert!(
        bcrypt::verify(&argocd["plainPassword"], &argocd["admin.password"]).expect("a bcrypt hash"),
        "Argo CD's hash is of the stored plaintext (the original's bug 1 is fixed)"
    );
    assert_eq!(before["grafana/admin"]["admin-password"], "grafana-from-config");
    let passcode = &before["sonarqube/monitoring"]["passcode"];
    assert!(passcode.len() == 64 && passcode.bytes().all(|b| b.is_ascii_hexdigit()), "hex of 32 bytes: {}", passcode.len());
    assert_eq!(before["docker/registry"]["registry"], "docker.io");
    assert_eq!(before["docker/registry"]["username"], "", "no random junk for credentials only the user has (bug 2)");
    assert_eq!(before["backstage/app"]["githubToken"], "");
    for (path, key) in [
        ("sonarqube/admin", "password"),
        ("backstage/app", "backendSecret"),
        ("backstage/app", "dexClientSecret"),
        ("backstage/postgres", "adminPassword"),
        ("backstage/postgres", "appPassword"),
    ] {
        assert!(is_base64_of_32_bytes(&before[path][key]), "{path} {key}");
    }
    assert_ne!(before["backstage/postgres"]["adminPassword"], before["backstage/postgres"]["appPassword"], "independent values");

    // Second run: nothing is initialised again, no value changes, not even with other
    // inputs, and with the keys taken from the lab's state or from the Secret alike.
    let again = init_and_unseal(&vault, Some(&cluster), Some(&first.keys)).await.expect("second run");
    assert!(!again.initialised && !again.unsealed && !again.stored_in_cluster, "{again:?}");
    assert_eq!(again.keys, first.keys);
    let from_secret = init_and_unseal(&vault, Some(&cluster), None).await.expect("keys from the Secret");
    assert_eq!(from_secret.keys, first.keys);
    let other_inputs = BTreeMap::from([("grafana_admin_password".to_owned(), "changed".to_owned())]);
    let report = seed(&root, SEEDS, &other_inputs).await.expect("second seeding");
    assert!(report.is_noop(), "a rerun writes nothing: {report:?}");
    assert!(report.values.iter().all(|v| v.action == SeedAction::Kept));
    assert_eq!(read_seeded(&root).await.expect("read again"), before, "no value changed");

    // A Secret that went missing is written again from the lab's state.
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(cp.client(), VAULT_NAMESPACE);
    api.delete(KEYS_SECRET, &Default::default()).await.expect("delete the keys' Secret");
    let restored = init_and_unseal(&vault, Some(&cluster), Some(&first.keys)).await.expect("restores the Secret");
    assert!(restored.stored_in_cluster && !restored.initialised, "{restored:?}");
    assert_eq!(
        cluster.secret_data(VAULT_NAMESPACE, KEYS_SECRET).await.expect("read").expect("back")["root-token"],
        first.keys.root_token.as_bytes()
    );

    // Keys in the state that disagree with the Secret are not chosen between.
    let wrong = VaultKeys { unseal_key: "00".repeat(32), root_token: "s.other".into() };
    let err = init_and_unseal(&vault, Some(&cluster), Some(&wrong)).await.expect_err("keys differ");
    assert!(matches!(err, VaultError::KeysDiffer { .. }), "{err}");
    // An initialised Vault whose keys are nowhere is never re-initialised.
    let err = init_and_unseal(&vault, None, None).await.expect_err("no keys");
    assert!(matches!(err, VaultError::NoKeys { .. }), "{err}");
    assert!(err.to_string().contains("never re-initialises"), "{err}");
    assert_eq!(read_seeded(&root).await.expect("read again"), before, "still no value changed");
}

#[tokio::test]
async fn a_hash_that_does_not_match_its_plaintext_is_repaired_and_nothing_else_changes() {
    let testbed = require!(Need::OpenBao);
    let bao = Bao::start(&testbed).await.expect("OpenBao starts");
    let vault = bao.vault();
    let keys = init_and_unseal(&vault, None, None).await.expect("init").keys;
    let root = vault.with_token(&keys.root_token);
    seed(&root, SEEDS, &BTreeMap::new()).await.expect("seed");
    let before = read_seeded(&root).await.expect("read");

    // What the original left behind: a hash of another random value (digest §10, bug 1),
    // written with a plain KV v2 patch.
    let other = bcrypt::hash("an-unrelated-random-value", 4).expect("hash");
    let transport = HttpTransport::new(&bao.url()).expect("transport");
    let body = serde_json::json!({ "data": { "admin.password": other } }).to_string().into_bytes();
    let request = Request {
        method: http::Method::PATCH,
        path: "secret/data/argocd/admin".into(),
        token: Some(keys.root_token.clone()),
        content_type: Some("application/merge-patch+json"),
        body,
    };
    let answer = transport.send(request).await.expect("patch");
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));

    let report = seed(&root, SEEDS, &BTreeMap::new()).await.expect("seed again");
    let changed: Vec<_> = report.values.iter().filter(|v| v.action != SeedAction::Kept).collect();
    assert_eq!(changed.len(), 1, "{report:?}");
    assert_eq!((changed[0].path, changed[0].key, changed[0].action), ("argocd/admin", "admin.password", SeedAction::Rehashed));
    let after = read_seeded(&root).await.expect("read");
    assert_eq!(after["argocd/admin"]["plainPassword"], before["argocd/admin"]["plainPassword"], "the plaintext is kept");
    assert!(bcrypt::verify(&after["argocd/admin"]["plainPassword"], &after["argocd/admin"]["admin.password"]).expect("bcrypt"));
    let (mut after_rest, mut before_rest) = (after.clone(), before.clone());
    after_rest.remove("argocd/admin");
    before_rest.remove("argocd/admin");
    assert_eq!(after_rest, before_rest, "every other path is untouched");
    assert!(seed(&root, SEEDS, &BTreeMap::new()).await.expect("third").is_noop());

    // An input no seed takes is refused before anything is written.
    let typo = BTreeMap::from([("grafana_admin_pasword".to_owned(), "x".to_owned())]);
    let err = seed(&root, SEEDS, &typo).await.expect_err("unknown input");
    assert!(err.to_string().contains("no seed takes grafana_admin_pasword"), "{err}");
}

#[tokio::test]
async fn a_restarted_server_comes_back_sealed_and_is_unsealed_and_a_wrong_key_is_refused() {
    let testbed = require!(Need::OpenBao);
    let mut bao = Bao::start(&testbed).await.expect("OpenBao starts");
    let keys = init_and_unseal(&bao.vault(), None, None).await.expect("init").keys;
    let root = bao.vault().with_token(&keys.root_token);
    seed(&root, SEEDS, &BTreeMap::new()).await.expect("seed");
    let before = read_seeded(&root).await.expect("read");
    assert_eq!(unseal_if_sealed(&bao.vault(), &keys.unseal_key).await.expect("unsealed: nothing to do"), Unseal::AlreadyUnsealed);

    bao.restart().await.expect("OpenBao restarts");
    let vault = bao.vault();
    let health = vault.health().await.expect("health");
    assert!(health.initialized && health.sealed && !health.is_ready(), "a restart seals: {health:?}");
    assert_eq!(health.child().reason, "Vault is sealed");
    let err = vault.wait_ready(Duration::from_secs(2)).await.expect_err("sealed is not ready");
    assert!(matches!(err, VaultError::NotReady { .. }) && err.to_string().contains("sealed"), "{err}");
    let err = root.kv_get("argocd/admin").await.expect_err("a sealed Vault serves nothing");
    assert_eq!(err.status(), Some(503), "{err}");

    // Negative: a wrong key (well-formed, and not even a key) is refused, clearly, and
    // Vault stays sealed.
    let wrong = "0123456789abcdef".repeat(4);
    let err = unseal_if_sealed(&vault, &wrong).await.expect_err("a wrong key");
    assert!(matches!(err, VaultError::KeyRefused { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("refused the unseal key") && text.contains("stays sealed") && !text.contains(&wrong), "{text}");
    let err = unseal_if_sealed(&vault, "not-a-key").await.expect_err("not a key");
    assert!(matches!(err, VaultError::KeyRefused { .. }), "{err}");
    assert!(vault.health().await.expect("health").sealed, "still sealed");

    // The auto-unseal step with the right key.
    assert_eq!(unseal_if_sealed(&vault, &keys.unseal_key).await.expect("unseal"), Unseal::Unsealed);
    assert!(vault.wait_ready(Duration::from_secs(10)).await.expect("ready").is_ready());
    assert_eq!(unseal_if_sealed(&vault, &keys.unseal_key).await.expect("again"), Unseal::AlreadyUnsealed, "unsealed: nothing");
    let root = vault.with_token(&keys.root_token);
    assert_eq!(read_seeded(&root).await.expect("read after restart"), before, "the data survived the restart");
    assert!(seed(&root, SEEDS, &BTreeMap::new()).await.expect("seed after restart").is_noop());

    // init_and_unseal after a restart unseals with the kept keys and initialises nothing.
    bao.restart().await.expect("OpenBao restarts again");
    let outcome = init_and_unseal(&bao.vault(), None, Some(&keys)).await.expect("unseals");
    assert!(outcome.unsealed && !outcome.initialised, "{outcome:?}");
}

#[tokio::test]
async fn a_server_that_is_not_initialised_is_not_unsealed_and_nothing_answers_a_closed_port() {
    let testbed = require!(Need::OpenBao);
    let bao = Bao::start(&testbed).await.expect("OpenBao starts");
    let err = unseal_if_sealed(&bao.vault(), "00").await.expect_err("not initialised");
    assert!(matches!(err, VaultError::NotInitialised { .. }), "{err}");
    assert!(!bao.vault().health().await.expect("health").initialized, "the unseal step never initialises");

    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let closed = idp_vault::Vault::direct(&format!("http://127.0.0.1:{port}")).expect("loopback");
    let err = closed.health().await.expect_err("nothing listens");
    assert!(err.is_transport(), "{err}");
    assert!(err.to_string().to_lowercase().contains("connection refused"), "the cause is named: {err}");
}
