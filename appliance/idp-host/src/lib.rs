//! The host plane: what idp-lab reads off the machine it runs on (addresses, routes,
//! free ports, limits) and the port reservations it holds while it creates a lab.
//! Nothing here sends a packet or talks to Docker or Kubernetes.

pub mod net;
