//! The effectful edges of idp-lab, one module per plane. Each plane exposes a small
//! surface; the pure decisions live in `idp-core`.

pub mod net;
pub mod state;
