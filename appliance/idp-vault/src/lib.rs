//! The secrets plane: the lab's Vault brought to life and kept alive, over Vault's HTTP
//! API (digest §1.2, §1.3 and the delayed crash loop of §10).
//!
//! * [`Vault`]: a client over a [`Transport`]: [`HttpTransport`] (plain HTTP to
//!   loopback, for tests and a port-forward) or [`ProxyTransport`] (through the API
//!   server's service or pod proxy, how the lab reaches its Vault: [`Vault::in_lab`]).
//! * [`init_and_unseal`]: initialise once (one key share, threshold one), unseal, keep
//!   the keys in Secret `vault-system/vault-init-keys` and return them for the lab's
//!   state store. Never initialises twice.
//! * [`configure_kubernetes_auth`]: the Kubernetes auth method, its config, and the
//!   `eso-<ns>-role` roles External Secrets logs in with, each with a read-only policy.
//! * [`seed`]: every value of [`idp_core::secrets::SEEDS`], generated or given once and
//!   never regenerated; Argo CD's bcrypt hash from the plaintext stored beside it.
//! * [`unseal_with_kept_keys`]: the watchdog's unseal action, with the keys kept.
//! * [`unseal_if_sealed`] and its trigger [`auto_unseal`] (a watch on pod `vault-0`):
//!   a Vault that restarts sealed is unsealed again.
//! * Readiness: [`Vault::health`] and [`Vault::wait_ready`]; ready means initialised,
//!   unsealed and active (`sys/health` answering 200), not Running.
//!
//! The order of a bootstrap: [`init_and_unseal`] (no token), then with the root token
//! [`configure_kubernetes_auth`] and [`seed`].

mod auth;
mod client;
mod error;
mod init;
mod seed;
mod transport;
mod watch;

pub use auth::{KubernetesAuth, configure_kubernetes_auth};
pub use client::{Health, SealStatus, Vault};
pub use error::{Cause, VaultError};
pub use init::{InitOutcome, Unseal, init_and_unseal, unseal_if_sealed, unseal_with_kept_keys};
pub use seed::{SeedAction, SeedReport, Seeded, seed};
pub use transport::{BoxFuture, HttpTransport, ProxyTransport, Request, Response, TOKEN_HEADER, Transport};
pub use watch::{AutoUnseal, START_GRACE, VaultStart, auto_unseal, vault_starts};
