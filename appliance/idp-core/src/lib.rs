//! The pure core of idp-lab: configuration and profiles, the embedded platform
//! catalogue, and rendering. Nothing here does I/O beyond reading data compiled into
//! the binary.

pub mod assets;
pub mod bootstrap;
pub mod catalogue;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod diag;
pub mod drift;
pub mod health;
pub mod lock;
pub mod names;
pub mod objects;
pub mod oci;
pub mod profiles;
pub mod readiness;
pub mod render;
pub mod routes;
pub mod secrets;
pub mod settings;
pub mod slo;
pub mod yaml;
