//! The secrets plane as data: where Vault runs and keeps its keys, the seeding table
//! (digest §1.2) and the Kubernetes-auth roles External Secrets logs in with (§1.3),
//! each with the policy it needs.
//!
//! Everything here is pure; `idp-vault` carries it out against Vault's HTTP API.
//!
//! Two of the original's bugs are fixed in the table itself:
//!
//! * Argo CD's `admin.password` is the bcrypt hash of the `plainPassword` stored beside
//!   it ([`Source::Bcrypt`]), not a second, independent random value (digest §10, bug 1).
//! * Empty registry credentials and an empty GitHub token stay empty instead of becoming
//!   random junk (bug 2): a random registry login makes image pulls fail.
//!
//! And one of its trade-offs is narrowed: each role's policy reads only the paths its
//! namespace's ExternalSecrets use, where the original gave every role create, update and
//! delete on all of `secret/`.

use serde::{Deserialize, Serialize};

/// The namespace Vault runs in.
pub const VAULT_NAMESPACE: &str = "vault-system";
/// Vault's Service (the chart's release name).
pub const VAULT_SERVICE: &str = "vault";
/// The port of Vault's API on its Service and pod.
pub const VAULT_PORT: u16 = 8200;
/// The pod of the standalone Vault server, watched for restarts.
pub const VAULT_POD: &str = "vault-0";
/// The Vault container in [`VAULT_POD`].
pub const VAULT_CONTAINER: &str = "vault";

/// The Secret in [`VAULT_NAMESPACE`] that holds the unseal key and root token, as the
/// original's `vault-init.sh` named it.
pub const KEYS_SECRET: &str = "vault-init-keys";
/// The key of [`KEYS_SECRET`] holding the unseal key.
pub const UNSEAL_KEY_FIELD: &str = "unseal-key";
/// The key of [`KEYS_SECRET`] holding the root token.
pub const ROOT_TOKEN_FIELD: &str = "root-token";

/// How many key shares Vault is initialised with (a lab, not a bank).
pub const KEY_SHARES: u8 = 1;
/// How many shares unseal Vault.
pub const KEY_THRESHOLD: u8 = 1;

/// The mount of the KV version 2 engine every seeded path lives under.
pub const KV_MOUNT: &str = "secret";
/// The mount of the Kubernetes auth method.
pub const KUBERNETES_AUTH_MOUNT: &str = "kubernetes";
/// The API server as Vault sees it from inside the cluster.
pub const IN_CLUSTER_KUBERNETES_HOST: &str = "https://kubernetes.default.svc:443";
/// The service account External Secrets runs as in each namespace with a SecretStore.
pub const ESO_SERVICE_ACCOUNT: &str = "external-secrets";
/// The audience of the tokens External Secrets presents (the SecretStores' `audiences`).
pub const ESO_AUDIENCE: &str = "vault";
/// How long a Vault token from a Kubernetes login lives.
pub const ESO_TOKEN_TTL: &str = "24h";
/// [`ESO_TOKEN_TTL`] in seconds, as Vault reports a role's `token_ttl`.
pub const ESO_TOKEN_TTL_SECONDS: u64 = 24 * 60 * 60;

/// The bcrypt cost of hashed values (`htpasswd -nbBC 10` in the original).
pub const BCRYPT_COST: u32 = 10;
/// How many random bytes a generated value holds (`sys/tools/random/32`).
pub const RANDOM_BYTES: u8 = 32;

/// The keys `sys/init` hands out once. Kept by the caller in the lab's state store and
/// in the [`KEYS_SECRET`] Secret; `Debug` never shows them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultKeys {
    /// The one unseal key share, hex as `sys/init` returns it in `keys`.
    pub unseal_key: String,
    /// The initial root token.
    pub root_token: String,
}

impl std::fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultKeys").field("unseal_key", &"<redacted>").field("root_token", &"<redacted>").finish()
    }
}

/// How Vault encodes the random bytes it generates (`format` of `sys/tools/random`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Standard base64 with padding: 44 characters for 32 bytes.
    Base64,
    /// Lower-case hex: 64 characters for 32 bytes.
    Hex,
}

impl Encoding {
    /// The name Vault's `format` parameter takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
        }
    }
}

/// What a value falls back to when its input is not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// [`RANDOM_BYTES`] random bytes from Vault, encoded.
    Random(Encoding),
    /// A fixed value (empty for credentials that only the user can have).
    Fixed(&'static str),
}

/// Where a seeded value comes from. A value that exists in Vault is never replaced by
/// its source: a rerun changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// [`RANDOM_BYTES`] random bytes from Vault (`sys/tools/random/32`), encoded.
    Random(Encoding),
    /// A fixed value.
    Fixed(&'static str),
    /// A value the user may give under the name `input` (blank counts as not given);
    /// otherwise `otherwise`.
    Input {
        /// The input's name, e.g. `argocd_admin_password`.
        input: &'static str,
        /// The value when the input is not given.
        otherwise: Fallback,
    },
    /// The bcrypt hash (cost [`BCRYPT_COST`]) of the value of key `of` of the same
    /// path, which comes earlier in the table. Derived, so it follows its plaintext: it is
    /// written when missing, and rewritten when it does not match the plaintext.
    Bcrypt {
        /// The key holding the plaintext.
        of: &'static str,
    },
}

/// One seeded value: a key of a KV v2 secret under [`KV_MOUNT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The secret's path under the mount, e.g. `argocd/admin` (`secret/argocd/admin`).
    pub path: &'static str,
    /// The key inside the secret.
    pub key: &'static str,
    /// Where the value comes from.
    pub source: Source,
}

const fn seed(path: &'static str, key: &'static str, source: Source) -> Seed {
    Seed { path, key, source }
}

const fn input(input: &'static str, otherwise: Fallback) -> Source {
    Source::Input { input, otherwise }
}

const RANDOM: Fallback = Fallback::Random(Encoding::Base64);
const EMPTY: Fallback = Fallback::Fixed("");

/// The seeding table (digest §1.2, `vault:generate-secrets`), in the order values are
/// resolved: a [`Source::Bcrypt`] comes after its plaintext. Inputs are named after the
/// original's environment variables, lower-cased.
pub const SEEDS: &[Seed] = &[
    seed("argocd/admin", "plainPassword", input("argocd_admin_password", RANDOM)),
    seed("argocd/admin", "admin.password", Source::Bcrypt { of: "plainPassword" }),
    seed("argocd/admin", "username", Source::Fixed("admin")),
    seed("grafana/admin", "admin-password", input("grafana_admin_password", RANDOM)),
    seed("sonarqube/admin", "password", input("sonarqube_admin_password", RANDOM)),
    seed("sonarqube/monitoring", "passcode", input("sonarqube_monitoring_passcode", Fallback::Random(Encoding::Hex))),
    seed("docker/registry", "registry", input("docker_registry_url", Fallback::Fixed("docker.io"))),
    seed("docker/registry", "username", input("docker_registry_username", EMPTY)),
    seed("docker/registry", "password", input("docker_registry_password", EMPTY)),
    seed("backstage/app", "backendSecret", Source::Random(Encoding::Base64)),
    seed("backstage/app", "dexClientSecret", input("backstage_dex_client_secret", RANDOM)),
    seed("backstage/app", "githubToken", input("github_token", EMPTY)),
    seed("backstage/postgres", "adminPassword", Source::Random(Encoding::Base64)),
    seed("backstage/postgres", "appPassword", Source::Random(Encoding::Base64)),
    // Not in the digest's table: Dex's static clients for Argo CD and Grafana had no
    // secret anywhere, so Dex's `dex-client-secrets` ExternalSecret could never be Ready.
    seed("dex/clients", "argocd", Source::Random(Encoding::Base64)),
    seed("dex/clients", "grafana", Source::Random(Encoding::Base64)),
];

/// The paths of `seeds`, each once, in table order.
pub fn seed_paths(seeds: &[Seed]) -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = Vec::new();
    for s in seeds {
        if !paths.contains(&s.path) {
            paths.push(s.path);
        }
    }
    paths
}

/// What is wrong with a seeding table, one line per problem: a path or key that is not
/// a plain Vault path segment, a key seeded twice, a [`Source::Bcrypt`] whose plaintext
/// is not an earlier key of its path. Empty for [`SEEDS`].
pub fn table_problems(seeds: &[Seed]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, s) in seeds.iter().enumerate() {
        if !is_plain_path(s.path) {
            problems.push(format!("path {:?} is not a plain Vault path", s.path));
        }
        if s.key.is_empty() {
            problems.push(format!("{}: a key is empty", s.path));
        }
        let earlier = &seeds[..i];
        if earlier.iter().any(|e| e.path == s.path && e.key == s.key) {
            problems.push(format!("{}: key {} is seeded twice", s.path, s.key));
        }
        if let Source::Bcrypt { of } = s.source
            && !earlier.iter().any(|e| e.path == s.path && e.key == of && !matches!(e.source, Source::Bcrypt { .. }))
        {
            problems.push(format!("{}: {} hashes {of}, which is not an earlier plaintext key of the path", s.path, s.key));
        }
    }
    problems
}

/// Whether `path` is a relative path of non-empty segments of `[A-Za-z0-9._-]`, none of
/// them `.` or `..` (so it cannot leave its mount).
pub fn is_plain_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

/// A Kubernetes-auth role External Secrets logs in with from one namespace: it binds
/// [`ESO_SERVICE_ACCOUNT`] there, audience [`ESO_AUDIENCE`], TTL [`ESO_TOKEN_TTL`], to
/// a policy that reads `paths` and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EsoRole {
    /// The namespace of the SecretStore (and of its service account).
    pub namespace: &'static str,
    /// The KV paths (under [`KV_MOUNT`]) the namespace's ExternalSecrets read.
    pub paths: &'static [&'static str],
}

impl EsoRole {
    /// The role's name, `eso-<namespace>-role`, as the SecretStores name it.
    pub fn role_name(&self) -> String {
        format!("eso-{}-role", self.namespace)
    }

    /// The policy's name, `eso-<namespace>`.
    pub fn policy_name(&self) -> String {
        format!("eso-{}", self.namespace)
    }

    /// The policy, in Vault's HCL: `read` on each path's data and metadata.
    pub fn policy(&self) -> String {
        let mut out = format!("# External Secrets in namespace {}: read only what its ExternalSecrets use.\n", self.namespace);
        for path in self.paths {
            out.push_str(&format!("path \"{KV_MOUNT}/data/{path}\" {{\n  capabilities = [\"read\"]\n}}\n"));
            out.push_str(&format!("path \"{KV_MOUNT}/metadata/{path}\" {{\n  capabilities = [\"read\"]\n}}\n"));
        }
        out
    }
}

/// The roles of digest §1.3: one per namespace with a SecretStore. Backstage also reads
/// Argo CD's login (its Argo CD plugin signs in with `username` and `plainPassword`).
pub const ESO_ROLES: &[EsoRole] = &[
    EsoRole { namespace: "argocd", paths: &["argocd/admin"] },
    EsoRole { namespace: "observability", paths: &["grafana/admin"] },
    EsoRole { namespace: "cicd", paths: &["sonarqube/admin", "sonarqube/monitoring", "docker/registry"] },
    EsoRole { namespace: "backstage", paths: &["backstage/app", "backstage/postgres", "argocd/admin", "dex/clients"] },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent_and_covers_the_digest() {
        assert_eq!(table_problems(SEEDS), Vec::<String>::new());
        assert_eq!(
            seed_paths(SEEDS),
            [
                "argocd/admin",
                "grafana/admin",
                "sonarqube/admin",
                "sonarqube/monitoring",
                "docker/registry",
                "backstage/app",
                "backstage/postgres",
                "dex/clients"
            ]
        );
        assert_eq!(SEEDS.len(), 16);
        let passcode = SEEDS.iter().find(|s| s.key == "passcode").map(|s| s.source);
        assert_eq!(passcode, Some(input("sonarqube_monitoring_passcode", Fallback::Random(Encoding::Hex))));
    }

    #[test]
    fn argocd_hashes_the_plaintext_it_stores() {
        let hash = SEEDS.iter().find(|s| s.key == "admin.password").map(|s| (s.path, s.source));
        assert_eq!(hash, Some(("argocd/admin", Source::Bcrypt { of: "plainPassword" })));
    }

    #[test]
    fn every_role_reads_only_seeded_paths() {
        let paths = seed_paths(SEEDS);
        for role in ESO_ROLES {
            for path in role.paths {
                assert!(paths.contains(path), "{} reads {path}, which is not seeded", role.role_name());
            }
        }
        // Every seeded path is read by some role.
        for path in paths {
            assert!(ESO_ROLES.iter().any(|r| r.paths.contains(&path)), "nobody reads {path}");
        }
    }

    #[test]
    fn a_policy_reads_its_paths_and_nothing_else() {
        let role = ESO_ROLES[0];
        assert_eq!(role.role_name(), "eso-argocd-role");
        assert_eq!(role.policy_name(), "eso-argocd");
        assert_eq!(
            role.policy(),
            "# External Secrets in namespace argocd: read only what its ExternalSecrets use.\n\
             path \"secret/data/argocd/admin\" {\n  capabilities = [\"read\"]\n}\n\
             path \"secret/metadata/argocd/admin\" {\n  capabilities = [\"read\"]\n}\n"
        );
    }

    #[test]
    fn table_problems_are_named() {
        let bad = [
            seed("a/b", "x", Source::Bcrypt { of: "y" }),
            seed("a/b", "y", Source::Fixed("1")),
            seed("a/b", "y", Source::Fixed("2")),
            seed("../c", "z", Source::Fixed("")),
            seed("a/b", "", Source::Fixed("")),
            seed("a/b", "h", Source::Bcrypt { of: "x" }),
        ];
        assert_eq!(
            table_problems(&bad),
            [
                "a/b: x hashes y, which is not an earlier plaintext key of the path",
                "a/b: key y is seeded twice",
                "path \"../c\" is not a plain Vault path",
                "a/b: a key is empty",
                "a/b: h hashes x, which is not an earlier plaintext key of the path",
            ]
        );
    }

    #[test]
    fn plain_paths_cannot_leave_their_mount() {
        assert!(is_plain_path("argocd/admin"));
        assert!(is_plain_path("a.b_c-d"));
        for bad in ["", "/a", "a/", "a//b", "a/../b", ".", "a b", "a?b", "a%2fb"] {
            assert!(!is_plain_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_never_shown() {
        let keys = VaultKeys { unseal_key: "deadbeef".into(), root_token: "s.secret".into() };
        let shown = format!("{keys:?}");
        assert!(!shown.contains("deadbeef") && !shown.contains("s.secret"), "{shown}");
        let json = serde_json::to_string(&keys).expect("serialises");
        assert_eq!(serde_json::from_str::<VaultKeys>(&json).expect("round trip"), keys);
    }
}
