//! `idp-lab creds`: the logins that work for the lab's services, each read where the
//! platform keeps it, with where it was read from (the shape: `docs/creds-verify.md`).
//!
//! | service | username | password |
//! |---|---|---|
//! | Argo CD | Vault `secret/argocd/admin` `username` | Vault `secret/argocd/admin` `plainPassword` (the only plaintext: Secret `argocd/argocd-secret` holds its bcrypt hash) |
//! | Grafana | `admin` (the ExternalSecret's template) | Vault `secret/grafana/admin` `admin-password`, else Secret `observability/grafana-admin-credentials` |
//! | SonarQube | `admin` | Vault `secret/sonarqube/admin` `password`, else Secret `cicd/sonarqube-admin-credentials` (URL-decoded) |
//! | Vault | none: a token | the root token: the lab's state store, else Secret `vault-system/vault-init-keys` |
//! | Dex/Backstage | `admin@example.com` | Dex's static user of the embedded configuration |
//!
//! Vault is reached through the API server's service proxy ([`Vault::in_lab`]) with the
//! root token. What cannot be read says why and what to do, and the others are still
//! printed; exit [`NO_LOGIN`] when none could be read. Passwords go to stdout only, and
//! nothing here logs them.

use crate::cli::{Global, LabArgs};
use crate::exit::{Failure, NO_LOGIN, NOT_FOUND};
use crate::lab::{self, Lab};
use crate::printer::Printer;
use idp_core::secrets::{KEYS_SECRET, ROOT_TOKEN_FIELD, VAULT_NAMESPACE, VAULT_SERVICE, VaultKeys};
use idp_kube::Cluster;
use idp_vault::Vault;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long the API server, Vault or a Secret read may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Dex's static user (`embedded/components/dex/values.yaml`, `staticPasswords`): the
/// original's lab login, with Dex's well-known example hash of [`DEX_PASSWORD`].
pub const DEX_USER: &str = "admin@example.com";
/// The password [`DEX_HASH`] is the bcrypt hash of.
pub const DEX_PASSWORD: &str = "password";
/// The hash Dex's configuration carries for [`DEX_USER`] (a unit test keeps the two in step).
#[cfg_attr(not(test), allow(dead_code))]
const DEX_HASH: &str = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W";

/// The `creds -o json` document.
#[derive(Serialize)]
struct Creds {
    lab: String,
    logins: Vec<Entry>,
}

/// One service: its login, or why it could not be read.
#[derive(Serialize)]
#[serde(untagged)]
enum Entry {
    Login(Login),
    Unreadable { service: &'static str, error: String },
}

/// A login that works, and where it was read from. No `Debug`: it holds a password.
#[derive(Serialize, Clone)]
pub struct Login {
    /// The service: `argocd`, `grafana`, `sonarqube`, `vault` or `backstage`.
    pub service: &'static str,
    /// Where to sign in.
    pub url: String,
    /// The username; none for Vault (its login is a token).
    pub username: Option<String>,
    /// The password (Vault: the root token).
    pub password: String,
    /// Where the values were read from, e.g. `Vault secret/grafana/admin (admin-password)`.
    pub source: String,
}

/// A service `creds` knows the login of.
struct Service {
    id: &'static str,
    title: &'static str,
    /// The first label of its hostname (its route's `host` in the catalogue).
    host: &'static str,
}

const SERVICES: [Service; 5] = [
    Service { id: "argocd", title: "Argo CD", host: "argocd" },
    Service { id: "grafana", title: "Grafana", host: "grafana" },
    Service { id: "sonarqube", title: "SonarQube", host: "sonarqube" },
    Service { id: "vault", title: "Vault", host: "vault" },
    Service { id: "backstage", title: "Dex/Backstage", host: "backstage" },
];

pub fn run(global: &Global, printer: Printer, args: LabArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args)?;
    require_lab(&lab)?;
    let settings = lab.ctx.settings()?;
    let kept = kept_keys(&lab);
    let entries = lab::runtime()?.block_on(async {
        let mut sources = Sources::open(&lab, kept).await;
        let mut entries = Vec::new();
        for service in &SERVICES {
            let url = url(service.host, &settings.network.dns_suffix, settings.network.ports.https);
            let read = match stack_off(&lab, service.host) {
                Some(reason) => Err(reason),
                None => sources.login(service.id, url).await,
            };
            entries.push(match read {
                Ok(login) => Entry::Login(login),
                Err(error) => Entry::Unreadable { service: service.id, error },
            });
        }
        entries
    });
    let creds = Creds { lab: lab.name.clone(), logins: entries };
    printer.result(|| text(&creds), &creds)?;
    if creds.logins.iter().any(|e| matches!(e, Entry::Login(_))) {
        return Ok(());
    }
    Err(Failure::new(NO_LOGIN, format!("no login of lab {:?} could be read (each entry says why)", lab.name)))
}

/// A failure naming the lab when it was never made (no record, no kubeconfig).
pub fn require_lab(lab: &Lab) -> Result<(), Failure> {
    if lab.record.is_some() || lab::kubeconfig_path(&lab.dir()).exists() {
        return Ok(());
    }
    Err(Failure::new(
        NOT_FOUND,
        format!("there is no lab {:?} (`idp-lab list` shows the labs; `idp-lab up --name {}` makes it)", lab.name, lab.name),
    ))
}

/// The Vault keys kept in the lab's state store, or why they could not be read.
pub fn kept_keys(lab: &Lab) -> Result<Option<VaultKeys>, String> {
    lab.store
        .get::<VaultKeys>(idp_state::VAULT_KEYS_RECORD)
        .map_err(|e| format!("the Vault keys in the lab's state store could not be read: {e}"))
}

/// `https://<host>.<suffix>/`, with the HTTPS port when it is not 443: the URL the lab's
/// HTTPS entry answers a service on (as `urls` and `open` write it).
pub fn url(host: &str, suffix: &str, https_port: u16) -> String {
    if https_port == 443 { format!("https://{host}.{suffix}/") } else { format!("https://{host}.{suffix}:{https_port}/") }
}

/// Why the service with route host `host` is not in the lab, when its stack is off.
fn stack_off(lab: &Lab, host: &str) -> Option<String> {
    let component = lab.ctx.catalogue.components.iter().find(|c| c.routes.iter().any(|r| r.host == host))?;
    let stack = component.stack;
    (!stack.enabled(&lab.ctx.config.stacks))
        .then(|| format!("not in this lab: its stack is off (stacks.{} = false in the lab's configuration)", stack.as_str()))
}

/// The lab's cluster, once its API server answered `/readyz`; else why not, with what to do.
pub async fn connect(lab: &Lab) -> Result<Cluster, String> {
    let path = lab::kubeconfig_path(&lab.dir());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("the lab has no kubeconfig ({} is missing); `idp-lab up --name {}` makes it", path.display(), lab.name));
        }
        Err(e) => return Err(format!("failed to read {}: {e}", path.display())),
    };
    let cluster = Cluster::from_kubeconfig(&text, None).await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(ANSWER_TIMEOUT, cluster.readyz()).await {
        Ok(Ok(())) => Ok(cluster),
        Ok(Err(e)) => {
            Err(format!("the lab's API server does not answer ({e}); a stopped lab starts with `idp-lab start --name {}`", lab.name))
        }
        Err(_) => Err(format!(
            "the lab's API server at {} did not answer within {}s; a stopped lab starts with `idp-lab start --name {}`",
            cluster.server(),
            ANSWER_TIMEOUT.as_secs(),
            lab.name
        )),
    }
}

/// A KV secret as read: its keys and values, `None` when Vault has none; else why not.
type KvRead = Result<Option<BTreeMap<String, String>>, String>;

/// Everything the logins are read from, each opened once: the cluster, the root token
/// and Vault (unsealed, with the token), and the KV paths read so far.
pub struct Sources {
    lab: String,
    cluster: Result<Cluster, String>,
    /// Vault with the root token when it serves secrets, and where the token came from;
    /// else why not.
    vault: Result<(Vault, String), String>,
    /// The token as read, for Vault's own login.
    token: Option<String>,
    kv: BTreeMap<&'static str, KvRead>,
    /// Set when Vault refused the root token (403).
    token_refused: Option<String>,
}

impl Sources {
    /// Opens the lab's sources; `kept` is the state store's Vault keys (read before, off
    /// the async runtime). Nothing here fails: what cannot be opened is kept as its reason.
    pub async fn open(lab: &Lab, kept: Result<Option<VaultKeys>, String>) -> Sources {
        let cluster = connect(lab).await;
        let token = root_token(&lab.name, &cluster, kept).await;
        let vault = open_vault(&lab.name, &cluster, token.clone()).await;
        let token = token.ok().map(|(token, _)| token);
        Sources { lab: lab.name.clone(), cluster, vault, token, kv: BTreeMap::new(), token_refused: None }
    }

    /// The KV v2 secret at `path` (under `secret/`), read once; `None` when Vault has none.
    async fn kv(&mut self, path: &'static str) -> KvRead {
        if let Some(read) = self.kv.get(path) {
            return read.clone();
        }
        let read = match &self.vault {
            Err(e) => Err(e.clone()),
            Ok((vault, source)) => match tokio::time::timeout(ANSWER_TIMEOUT, vault.kv_get(path)).await {
                Ok(Ok(data)) => Ok(data),
                Ok(Err(e)) if e.status() == Some(403) => {
                    let reason = format!("Vault refuses the root token from {source} ({e}); it was revoked, or belongs to another Vault");
                    self.token_refused = Some(reason.clone());
                    Err(reason)
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("Vault did not answer within {}s", ANSWER_TIMEOUT.as_secs())),
            },
        };
        self.kv.insert(path, read.clone());
        read
    }

    /// One key of a Secret the External Secrets operator wrote, and where it was read.
    async fn secret_key(&self, namespace: &str, name: &str, key: &str) -> Result<String, String> {
        let cluster = self.cluster.as_ref().map_err(Clone::clone)?;
        let data = match tokio::time::timeout(ANSWER_TIMEOUT, cluster.secret_data(namespace, name)).await {
            Ok(Ok(Some(data))) => data,
            Ok(Ok(None)) => return Err(format!("Secret {namespace}/{name} does not exist (External Secrets writes it from Vault)")),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("reading Secret {namespace}/{name} took more than {}s", ANSWER_TIMEOUT.as_secs())),
        };
        match data.get(key) {
            Some(value) => Ok(String::from_utf8_lossy(value).into_owned()),
            None => Err(format!("Secret {namespace}/{name} has no key {key}")),
        }
    }

    /// The login of service `id` (one of [`SERVICES`]), to sign in at `url`.
    pub async fn login(&mut self, id: &'static str, url: String) -> Result<Login, String> {
        let login = |username: Option<String>, password: String, source: String| Login {
            service: id,
            url: url.clone(),
            username,
            password,
            source,
        };
        let lab = self.lab.clone();
        match id {
            "argocd" => {
                // Said only when the cluster answers: then the Secrets could have been read.
                let why_only_vault = if self.cluster.is_ok() {
                    "; Argo CD's password is kept in plain only in Vault (Secret argocd/argocd-secret holds its bcrypt hash)"
                } else {
                    ""
                };
                let data = self.kv("argocd/admin").await.map_err(|e| format!("{e}{why_only_vault}"))?;
                let data = data.ok_or_else(|| format!("Vault has no secret/argocd/admin; `idp-lab up --name {lab}` seeds it"))?;
                let password = data
                    .get("plainPassword")
                    .cloned()
                    .ok_or_else(|| format!("Vault's secret/argocd/admin has no plainPassword; `idp-lab up --name {lab}` seeds it"))?;
                let username = data.get("username").cloned().unwrap_or_else(|| "admin".to_owned());
                Ok(login(Some(username), password, "Vault secret/argocd/admin (username, plainPassword)".to_owned()))
            }
            "grafana" => {
                let (password, source) = self
                    .vault_or_secret(
                        "grafana/admin",
                        "admin-password",
                        ("observability", "grafana-admin-credentials", "admin-password"),
                        |v| Some(v.to_owned()),
                    )
                    .await?;
                Ok(login(Some("admin".to_owned()), password, source))
            }
            "sonarqube" => {
                // The Secret holds the password URL-encoded for the chart's Job (sonarqube/secrets.yaml).
                let (password, source) = self
                    .vault_or_secret("sonarqube/admin", "password", ("cicd", "sonarqube-admin-credentials", "password"), query_unescape)
                    .await?;
                Ok(login(Some("admin".to_owned()), password, source))
            }
            "vault" => {
                // A root token Vault refused is no login (the reads above found out).
                if let Some(refused) = &self.token_refused {
                    return Err(refused.clone());
                }
                let (_, source) = self.vault.as_ref().map_err(Clone::clone)?;
                let token = self.token.clone().unwrap_or_default();
                Ok(login(None, token, format!("{source}: the root token")))
            }
            _ => Ok(login(
                Some(DEX_USER.to_owned()),
                DEX_PASSWORD.to_owned(),
                "Dex's static user (embedded dex configuration, staticPasswords)".to_owned(),
            )),
        }
    }

    /// Key `key` of Vault's `path`, else key `secret.2` of the Secret `secret.0/secret.1`
    /// that External Secrets wrote from it (its value through `decode`); with where it
    /// was read from, or both reasons.
    async fn vault_or_secret(
        &mut self,
        path: &'static str,
        key: &str,
        secret: (&str, &str, &str),
        decode: fn(&str) -> Option<String>,
    ) -> Result<(String, String), String> {
        let lab = self.lab.clone();
        let from_vault = match self.kv(path).await {
            Ok(Some(data)) => match data.get(key) {
                Some(value) => return Ok((value.clone(), format!("Vault secret/{path} ({key})"))),
                None => format!("Vault's secret/{path} has no {key} (`idp-lab up --name {lab}` seeds it)"),
            },
            Ok(None) => format!("Vault has no secret/{path} (`idp-lab up --name {lab}` seeds it)"),
            Err(e) => e,
        };
        let (namespace, name, secret_key) = secret;
        // Without the API, the Secret cannot be read either: one reason is enough.
        if self.cluster.is_err() {
            return Err(from_vault);
        }
        match self.secret_key(namespace, name, secret_key).await {
            Ok(value) => match decode(&value) {
                Some(value) => Ok((value, format!("Secret {namespace}/{name} ({secret_key}), written by External Secrets from Vault"))),
                None => Err(format!("{from_vault}; Secret {namespace}/{name} key {secret_key} is not URL-encoded text")),
            },
            Err(e) => Err(format!("{from_vault}; {e}")),
        }
    }
}

/// The root token and where it was read from: the lab's state store, else Secret
/// `vault-system/vault-init-keys`.
async fn root_token(
    lab: &str,
    cluster: &Result<Cluster, String>,
    kept: Result<Option<VaultKeys>, String>,
) -> Result<(String, String), String> {
    let kept = kept?;
    if let Some(keys) = kept {
        return Ok((keys.root_token, "the lab's state store (Vault keys kept by `idp-lab up`)".to_owned()));
    }
    let cluster = cluster.as_ref().map_err(Clone::clone)?;
    let secret = format!("{VAULT_NAMESPACE}/{KEYS_SECRET}");
    match tokio::time::timeout(ANSWER_TIMEOUT, cluster.secret_data(VAULT_NAMESPACE, KEYS_SECRET)).await {
        Ok(Ok(Some(data))) => match data.get(ROOT_TOKEN_FIELD).map(|v| String::from_utf8_lossy(v).into_owned()) {
            Some(token) if !token.is_empty() => Ok((token, format!("Secret {secret} ({ROOT_TOKEN_FIELD})"))),
            _ => Err(format!("Secret {secret} has no {ROOT_TOKEN_FIELD}, and the lab's state keeps no Vault keys")),
        },
        Ok(Ok(None)) => Err(format!(
            "Vault's root token is neither in the lab's state nor in Secret {secret}: idp-lab has not initialised this Vault \
             (`idp-lab up --name {}` does)",
            lab
        )),
        Ok(Err(e)) => Err(format!("failed to read Secret {secret}: {e}")),
        Err(_) => Err(format!("reading Secret {secret} took more than {}s", ANSWER_TIMEOUT.as_secs())),
    }
}

/// Vault with the root token, once it answered initialised, unsealed and active.
async fn open_vault(
    lab: &str,
    cluster: &Result<Cluster, String>,
    token: Result<(String, String), String>,
) -> Result<(Vault, String), String> {
    let cluster = cluster.as_ref().map_err(Clone::clone)?;
    match tokio::time::timeout(ANSWER_TIMEOUT, cluster.service_exists(VAULT_NAMESPACE, VAULT_SERVICE)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            return Err(format!(
                "Vault is not installed (no Service {VAULT_NAMESPACE}/{VAULT_SERVICE}); `idp-lab up --name {lab}` installs the platform"
            ));
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("the API server did not answer within {}s", ANSWER_TIMEOUT.as_secs())),
    }
    let vault = Vault::in_lab(cluster);
    let health = match tokio::time::timeout(ANSWER_TIMEOUT, vault.health()).await {
        Ok(Ok(health)) => health,
        Ok(Err(e)) => {
            return Err(format!(
                "Vault does not answer ({}); `idp-lab status --name {lab}` shows the lab's health",
                idp_core::diag::chain(&e)
            ));
        }
        Err(_) => {
            return Err(format!(
                "Vault did not answer within {}s; `idp-lab status --name {lab}` shows the lab's health",
                ANSWER_TIMEOUT.as_secs()
            ));
        }
    };
    if !health.initialized {
        return Err(format!("Vault is not initialised; `idp-lab up --name {lab}` initialises and seeds it"));
    }
    if health.sealed {
        return Err(format!("Vault is sealed; `idp-lab up --name {lab}` unseals it with the key the lab keeps"));
    }
    if health.standby {
        return Err("Vault is unsealed but not active yet (standby); try again in a few seconds".to_owned());
    }
    let (token, source) = token?;
    Ok((vault.with_token(&token), source))
}

/// Decodes a URL query component as Go's `url.QueryEscape` (the templates' `urlquery`)
/// wrote it: `+` is a space, `%XX` a byte; `None` when that is not text.
fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn text(creds: &Creds) -> String {
    let readable = creds.logins.iter().filter(|e| matches!(e, Entry::Login(_))).count();
    let mut out = format!("Logins of lab \"{}\": {readable} of {} readable. Keep them to yourself.\n", creds.lab, creds.logins.len());
    for entry in &creds.logins {
        let id = match entry {
            Entry::Login(login) => login.service,
            Entry::Unreadable { service, .. } => service,
        };
        let title = SERVICES.iter().find(|s| s.id == id).map_or(id, |s| s.title);
        match entry {
            Entry::Login(login) => {
                out.push_str(&format!("{title:<14} {}\n", login.url));
                match &login.username {
                    Some(username) => {
                        out.push_str(&format!("  username     {username}\n"));
                        out.push_str(&format!("  password     {}\n", login.password));
                    }
                    None => out.push_str(&format!("  token        {}\n", login.password)),
                }
                out.push_str(&format!("  read from    {}\n", login.source));
            }
            Entry::Unreadable { error, .. } => {
                out.push_str(&format!("{title:<14} cannot be read\n"));
                out.push_str(&format!("  why          {error}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dex_login_is_the_one_dex_is_configured_with() {
        let values =
            idp_core::catalogue::Catalogue::load().expect("catalogue").get("dex").expect("dex").file("values.yaml").expect("values");
        assert!(values.contains(&format!("email: {DEX_USER}")), "dex's values no longer name {DEX_USER}");
        assert!(values.contains(DEX_HASH), "dex's static password hash changed: update DEX_PASSWORD and DEX_HASH");
    }

    #[test]
    fn every_service_has_a_route_in_the_catalogue() {
        let catalogue = idp_core::catalogue::Catalogue::load().expect("catalogue");
        for service in &SERVICES {
            assert!(catalogue.components.iter().any(|c| c.routes.iter().any(|r| r.host == service.host)), "{}", service.host);
        }
    }

    #[test]
    fn urls_carry_the_port_unless_it_is_443() {
        assert_eq!(url("argocd", "127-0-0-1.nip.io", 443), "https://argocd.127-0-0-1.nip.io/");
        assert_eq!(url("argocd", "127-0-0-1.nip.io", 8443), "https://argocd.127-0-0-1.nip.io:8443/");
    }

    #[test]
    fn url_encoded_passwords_decode_as_go_wrote_them() {
        assert_eq!(query_unescape("a%2Bb%2Fc%3D%3D").as_deref(), Some("a+b/c=="));
        assert_eq!(query_unescape("a+b").as_deref(), Some("a b"));
        assert_eq!(query_unescape("plain").as_deref(), Some("plain"));
        assert_eq!(query_unescape("bad%2"), None);
        assert_eq!(query_unescape("bad%zz"), None);
    }

    #[test]
    fn an_unreadable_entry_is_service_and_error_only() {
        let entry = Entry::Unreadable { service: "vault", error: "Vault is sealed".into() };
        assert_eq!(serde_json::to_value(&entry).expect("json"), serde_json::json!({"service": "vault", "error": "Vault is sealed"}));
    }
}
