//! The provisioning plane: a lab's k3s nodes as Docker containers, made through the
//! Docker Engine API the way k3d makes them.
