//! The host plane: what idp-lab reads off the machine it runs on (addresses, routes,
//! resolvers, free ports, limits) and the port reservations it holds while it creates a
//! lab. Nothing here sends a packet or talks to Docker or Kubernetes.

pub mod facts;
pub mod net;
pub mod ports;
pub mod resolver;
pub mod trust;

#[cfg(test)]
mod child;
