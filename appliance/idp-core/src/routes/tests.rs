use super::*;
use serde_json::json;

fn httproute(ns: &str, name: &str, hosts: &[&str], backends: Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"hostnames": hosts, "rules": [{"backendRefs": backends}]},
    })
}

fn endpoints(ns: &str, name: &str, ready: bool) -> Value {
    let subsets = if ready {
        json!([{"addresses": [{"ip": "10.0.0.5"}], "ports": [{"port": 8080}]}])
    } else {
        json!([{"notReadyAddresses": [{"ip": "10.0.0.5"}], "ports": [{"port": 8080}]}])
    };
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"namespace": ns, "name": name}, "subsets": subsets})
}

fn with_parent_condition(mut route: Value, kind: &str, status: &str, message: &str) -> Value {
    route["status"] = json!({"parents": [{
        "parentRef": {"name": "idp-gateway", "namespace": "kube-system"},
        "controllerName": "io.cilium/gateway-controller",
        "conditions": [
            {"type": "Accepted", "status": if kind == "Accepted" { status } else { "True" }, "reason": if kind == "Accepted" { "NotAllowedByListeners" } else { "Accepted" }, "message": if kind == "Accepted" { message } else { "" }},
            {"type": "ResolvedRefs", "status": if kind == "ResolvedRefs" { status } else { "True" }, "reason": if kind == "ResolvedRefs" { "BackendNotFound" } else { "ResolvedRefs" }, "message": if kind == "ResolvedRefs" { message } else { "" }},
        ],
    }]});
    route
}

#[test]
fn a_route_with_ready_endpoints_is_ready_and_carries_its_backends() {
    let r = httproute("argocd", "argocd-server", &["ArgoCD.127-0-0-1.nip.io"], json!([{"name": "argocd-server", "port": 80}]));
    let all = routes(&[r], &[endpoints("argocd", "argocd-server", true)]);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].hostnames, ["argocd.127-0-0-1.nip.io"]);
    assert_eq!(all[0].backends[0].to_string(), "argocd/argocd-server:80");
    assert_eq!(all[0].health, Health::Ready);
}

#[test]
fn missing_or_unready_endpoints_name_the_service() {
    let r = httproute("a", "web", &["web.x.nip.io"], json!([{"name": "web", "port": 80}]));
    let none = routes(std::slice::from_ref(&r), &[]);
    assert_eq!(none[0].health, Health::NotReady { reason: "Service a/web has no endpoints".into() });
    let unready = routes(std::slice::from_ref(&r), &[endpoints("a", "web", false)]);
    assert_eq!(unready[0].health, Health::NotReady { reason: "Service a/web has no ready endpoint".into() });
    // Endpoints of the same name in another namespace do not count.
    let elsewhere = routes(&[r], &[endpoints("b", "web", true)]);
    assert!(!elsewhere[0].health.is_ready());
}

#[test]
fn a_cross_namespace_backend_is_looked_up_in_its_own_namespace() {
    let r = httproute("a", "web", &[], json!([{"name": "web", "namespace": "b", "port": 80}]));
    assert!(routes(std::slice::from_ref(&r), &[endpoints("b", "web", true)])[0].health.is_ready());
    assert!(!routes(&[r], &[endpoints("a", "web", true)])[0].health.is_ready());
}

#[test]
fn parent_conditions_come_before_endpoints_accepted_first() {
    let base = httproute("a", "web", &["web.x.nip.io"], json!([{"name": "web"}]));
    let refused = with_parent_condition(base.clone(), "Accepted", "False", "no listener matches");
    assert_eq!(
        routes(&[refused], &[endpoints("a", "web", true)])[0].health,
        Health::NotReady { reason: "not accepted by idp-gateway: NotAllowedByListeners: no listener matches".into() }
    );
    let unresolved = with_parent_condition(base.clone(), "ResolvedRefs", "False", "service web not found");
    assert_eq!(
        routes(&[unresolved], &[endpoints("a", "web", true)])[0].health,
        Health::NotReady { reason: "references not resolved for idp-gateway: BackendNotFound: service web not found".into() }
    );
    let fine = with_parent_condition(base, "Accepted", "True", "");
    assert!(routes(&[fine], &[endpoints("a", "web", true)])[0].health.is_ready());
}

#[test]
fn redirects_without_backends_are_left_out_and_other_kinds_are_not_checked() {
    let redirect = json!({
        "metadata": {"namespace": "kube-system", "name": "http-to-https-redirect"},
        "spec": {"hostnames": ["*.x.nip.io"], "rules": [{"filters": [{"type": "RequestRedirect"}]}]},
    });
    let pool = httproute("a", "llm", &["llm.x.nip.io"], json!([{"kind": "InferencePool", "name": "pool"}]));
    let all = routes(&[redirect, pool], &[]);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].backends[0].to_string(), "InferencePool a/pool");
    assert!(all[0].health.is_ready());
}

#[test]
fn routes_are_sorted_and_duplicate_backends_kept_once() {
    let two = json!({
        "metadata": {"namespace": "b", "name": "two"},
        "spec": {"rules": [{"backendRefs": [{"name": "s", "port": 80}]}, {"backendRefs": [{"name": "s", "port": 80}, {"name": "s", "port": 81}]}]},
    });
    let one = httproute("a", "one", &[], json!([{"name": "s"}]));
    let all = routes(&[two, one], &[]);
    assert_eq!(all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(all[1].backends.len(), 2);
}

#[test]
fn wildcards_match_one_or_more_labels_never_the_suffix_itself() {
    assert!(hostname_matches("*.x.nip.io", "a.x.nip.io"));
    assert!(hostname_matches("*.x.nip.io", "a.b.X.NIP.io."));
    assert!(!hostname_matches("*.x.nip.io", "x.nip.io"));
    assert!(!hostname_matches("*.x.nip.io", "ax.nip.io"));
    assert!(!hostname_matches("*.x.nip.io", ".x.nip.io"));
    assert!(hostname_matches("a.x.nip.io", "A.x.nip.io"));
    assert!(!hostname_matches("a.x.nip.io", "b.a.x.nip.io"));
}

#[test]
fn lookup_prefers_exact_then_the_longest_wildcard_then_catch_all() {
    let route = |name: &str, hosts: &[&str]| Route {
        namespace: "ns".into(),
        name: name.into(),
        hostnames: hosts.iter().map(|h| h.to_string()).collect(),
        backends: Vec::new(),
        health: Health::Ready,
    };
    let table =
        vec![route("any", &[]), route("exact", &["argocd.x.nip.io"]), route("short", &["*.nip.io"]), route("long", &["*.x.nip.io"])];
    let found = |host: &str| lookup(&table, host).map(|r| r.name.as_str());
    assert_eq!(found("argocd.x.nip.io"), Some("exact"));
    assert_eq!(found("grafana.x.nip.io"), Some("long"));
    assert_eq!(found("x.nip.io"), Some("short"));
    assert_eq!(found("example.com"), Some("any"));
    // Among equals, the first by namespace and name (the order `routes` sorts them in).
    let twins = [route("first", &["argocd.x.nip.io"]), route("second", &["argocd.x.nip.io"])];
    assert_eq!(lookup(&twins, "argocd.x.nip.io").map(|r| r.name.as_str()), Some("first"));
    let narrow = [route("exact", &["argocd.x.nip.io"])];
    assert_eq!(lookup(&narrow, "grafana.x.nip.io"), None);
}

#[test]
fn under_means_at_least_one_more_label() {
    assert!(is_under("a.x.nip.io", "x.nip.io") && is_under("a.b.X.NIP.IO", "x.nip.io"));
    assert!(!is_under("x.nip.io", "x.nip.io") && !is_under("ax.nip.io", "x.nip.io") && !is_under(".x.nip.io", "x.nip.io"));
    assert!(!is_under("é.x.nip.io.evil", "x.nip.io"), "no panic on a non-ASCII name");
    assert!(!is_under("aé.io", "é.io"), "a suffix cut inside a character is not a label boundary");
}
