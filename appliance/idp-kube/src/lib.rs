//! The Kubernetes plane: the one client every other plane uses to reach a cluster's
//! API (kubeconfig files, contexts, readiness of the API and its nodes).
