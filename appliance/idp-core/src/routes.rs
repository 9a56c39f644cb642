//! The lab's routes as the HTTPS entry, the landing page and `idp-lab urls` see them:
//! each HTTPRoute with its hostnames, its backends and a health verdict decided from the
//! API (the route's status and its backends' Endpoints), never from a request.
//!
//! Pure: the HTTPRoutes and Endpoints as `serde_json::Value` in, [`Route`]s out; the
//! Kubernetes plane watches them and calls [`routes`] on every change.
//!
//! The rules:
//!
//! - A route with no `backendRefs` in any rule (a redirect, like the Gateway's
//!   HTTP-to-HTTPS route) serves nothing over HTTPS: it is left out.
//! - Health, first match wins:
//!   1. a parent's `Accepted` condition is `False`: not ready, with its message;
//!   2. a parent's `ResolvedRefs` condition is `False`: not ready, with its message;
//!   3. a Service backend whose Endpoints are missing or have no ready address: not
//!      ready, naming the Service;
//!   4. otherwise ready. A route no Gateway has reported on yet (no `status.parents`) is
//!      judged by its backends alone: the entry forwards it and the Gateway answers.
//! - A backend of another kind than Service (an `InferencePool`, say) is not checked.
//! - Hostnames compare without case. `*.example.com` matches any name with at least one
//!   more label (`a.example.com`, `a.b.example.com`), never `example.com` itself, as the
//!   Gateway API defines it. [`lookup`] prefers an exact hostname, then the longest
//!   wildcard.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One HTTPRoute of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its hostnames, lower case, as written (wildcards included).
    pub hostnames: Vec<String>,
    /// The Services (or other objects) its rules send requests to.
    pub backends: Vec<Backend>,
    /// Whether it can serve requests, as far as the API says.
    pub health: Health,
}

/// Where a route sends requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// The object's kind (`Service` unless the route says otherwise).
    pub kind: String,
    /// Its namespace (the route's unless the reference says otherwise).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The port, when given.
    pub port: Option<u16>,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind != "Service" {
            write!(f, "{} ", self.kind)?;
        }
        write!(f, "{}/{}", self.namespace, self.name)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A route's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Health {
    /// It can serve: accepted, references resolved, every Service backend has a ready
    /// endpoint.
    Ready,
    /// It cannot serve now.
    NotReady {
        /// Why, as a human line naming what is missing.
        reason: String,
    },
}

impl Health {
    /// Whether it is [`Health::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready)
    }
}

/// The routes of `httproutes` (HTTPRoute objects), judged against `endpoints` (core/v1
/// Endpoints objects), sorted by namespace and name.
pub fn routes(httproutes: &[Value], endpoints: &[Value]) -> Vec<Route> {
    let ready: BTreeMap<(&str, &str), bool> = endpoints
        .iter()
        .filter_map(|e| Some(((str_at(e, &["metadata", "namespace"])?, str_at(e, &["metadata", "name"])?), has_ready_address(e))))
        .collect();
    let mut out: Vec<Route> = httproutes.iter().filter_map(|r| route(r, &ready)).collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn route(object: &Value, ready: &BTreeMap<(&str, &str), bool>) -> Option<Route> {
    let namespace = str_at(object, &["metadata", "namespace"])?.to_owned();
    let name = str_at(object, &["metadata", "name"])?.to_owned();
    let spec = object.get("spec")?;
    let hostnames = array(spec, "hostnames").filter_map(Value::as_str).map(str::to_ascii_lowercase).collect();
    let mut backends: Vec<Backend> = Vec::new();
    for rule in array(spec, "rules") {
        for backend in array(rule, "backendRefs") {
            let Some(backend_name) = backend.get("name").and_then(Value::as_str) else { continue };
            let backend = Backend {
                kind: backend.get("kind").and_then(Value::as_str).unwrap_or("Service").to_owned(),
                namespace: backend.get("namespace").and_then(Value::as_str).unwrap_or(&namespace).to_owned(),
                name: backend_name.to_owned(),
                port: backend.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()),
            };
            if !backends.contains(&backend) {
                backends.push(backend);
            }
        }
    }
    if backends.is_empty() {
        return None;
    }
    let health = health(object, &backends, ready);
    Some(Route { namespace, name, hostnames, backends, health })
}

fn health(object: &Value, backends: &[Backend], ready: &BTreeMap<(&str, &str), bool>) -> Health {
    let parents: Vec<&Value> = object.pointer("/status/parents").and_then(Value::as_array).into_iter().flatten().collect();
    for condition in ["Accepted", "ResolvedRefs"] {
        for parent in &parents {
            if let Some(c) = array(parent, "conditions").find(|c| c.get("type").and_then(Value::as_str) == Some(condition))
                && c.get("status").and_then(Value::as_str) == Some("False")
            {
                let gateway = parent.pointer("/parentRef/name").and_then(Value::as_str).unwrap_or("its Gateway");
                let reason = c.get("reason").and_then(Value::as_str).unwrap_or(condition);
                let message = c.get("message").and_then(Value::as_str).filter(|m| !m.is_empty());
                let what = if condition == "Accepted" { "not accepted by" } else { "references not resolved for" };
                return Health::NotReady {
                    reason: match message {
                        Some(m) => format!("{what} {gateway}: {reason}: {m}"),
                        None => format!("{what} {gateway}: {reason}"),
                    },
                };
            }
        }
    }
    for backend in backends.iter().filter(|b| b.kind == "Service") {
        match ready.get(&(backend.namespace.as_str(), backend.name.as_str())) {
            Some(true) => {}
            Some(false) => {
                return Health::NotReady { reason: format!("Service {}/{} has no ready endpoint", backend.namespace, backend.name) };
            }
            None => return Health::NotReady { reason: format!("Service {}/{} has no endpoints", backend.namespace, backend.name) },
        }
    }
    Health::Ready
}

fn has_ready_address(endpoints: &Value) -> bool {
    array(endpoints, "subsets").any(|s| array(s, "addresses").next().is_some())
}

fn array<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str()
}

/// Whether the route hostname `pattern` (exact, or `*.` and a suffix) matches `host`.
pub fn hostname_matches(pattern: &str, host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    match pattern.strip_prefix("*.") {
        Some(suffix) => is_under(host, suffix),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Whether `name` lies under `suffix` by at least one more label (`a.x.io` and
/// `a.b.x.io` under `x.io`, never `x.io` itself or `ax.io`), without case.
pub fn is_under(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.is_char_boundary(name.len() - suffix.len())
        && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

/// The route of `routes` serving `host`: one naming it exactly, else the one with the
/// longest matching wildcard; among equals, the first in `routes` (sorted by namespace
/// and name, as [`routes`] returns them). A route with no hostnames matches every name,
/// after all others.
pub fn lookup<'a>(routes: &'a [Route], host: &str) -> Option<&'a Route> {
    // Rank: exact (3), wildcard by suffix length (2), no hostnames (1).
    let rank = |route: &Route| -> Option<(u8, usize)> {
        if route.hostnames.is_empty() {
            return Some((1, 0));
        }
        route.hostnames.iter().filter(|p| hostname_matches(p, host)).map(|p| if p.starts_with("*.") { (2, p.len()) } else { (3, 0) }).max()
    };
    let mut best: Option<(&Route, (u8, usize))> = None;
    for route in routes {
        if let Some(r) = rank(route)
            && best.is_none_or(|(_, b)| r > b)
        {
            best = Some((route, r));
        }
    }
    best.map(|(route, _)| route)
}

#[cfg(test)]
mod tests;
