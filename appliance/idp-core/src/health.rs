//! The health rollup: every component and the whole lab get one verdict, Healthy,
//! Progressing, Degraded or Unknown, with the reasons of what is behind it.
//!
//! Argo CD's rule (the reference's §1.5): a parent's health is the **worst** of its
//! immediate children, ordered Healthy < Progressing < Degraded < Unknown (Unknown is
//! worst: nothing can be said, so nothing may be assumed fine). An object's health comes
//! from its readiness verdict (`crate::readiness::Verdict::health`: Ready is Healthy,
//! InProgress Progressing, Failed Degraded); what could not be read at all (the API down, a node container Docker does
//! not show) is Unknown. The reasons kept are those of every child that is not Healthy,
//! worst first, so `status` says *why* ("Deployment apps/grafana: 0/1 available", "Vault
//! is sealed").
//!
//! Pure: the daemon gathers the children (objects from its watches, the node containers
//! from Docker, its own servers, Argo CD Applications, k3s HelmCharts, Vault's seal
//! status) and this module judges them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A health verdict, ordered best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Health {
    /// Everything behind it is fine.
    Healthy,
    /// On its way: nothing says it will not get there.
    Progressing,
    /// Broken: it will not get better without a change.
    Degraded,
    /// Could not be judged (not readable, not reachable).
    Unknown,
}

impl Health {
    /// `Healthy`, `Progressing`, `Degraded` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Progressing => "Progressing",
            Health::Degraded => "Degraded",
            Health::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One child's verdict: what it is, its health, and why when not Healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    /// What it is: `Deployment apps/grafana`, `node lab-server-0`, `daemon https`.
    pub subject: String,
    /// Its health.
    pub health: Health,
    /// Why, when not Healthy (a condition's message, a waiting reason, "sealed").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Child {
    /// A child that could not be judged, and why.
    pub fn unknown(subject: impl Into<String>, reason: impl Into<String>) -> Child {
        Child { subject: subject.into(), health: Health::Unknown, reason: reason.into() }
    }
}

impl fmt::Display for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}: {}", self.subject, self.health)
        } else {
            write!(f, "{}: {} ({})", self.subject, self.health, self.reason)
        }
    }
}

/// A rolled-up verdict: the worst of its children, with every child that is not Healthy
/// as a reason, worst first (in the children's order within one health).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    /// What was judged: a component's name, or `lab`.
    pub name: String,
    /// The worst child's health; Healthy with no children.
    pub health: Health,
    /// How many children were judged.
    pub children: usize,
    /// The children that are not Healthy, worst first.
    pub reasons: Vec<Child>,
}

/// Rolls `children` up into `name`'s verdict.
pub fn rollup(name: impl Into<String>, children: &[Child]) -> Rollup {
    let health = children.iter().map(|c| c.health).max().unwrap_or(Health::Healthy);
    let mut reasons: Vec<Child> = children.iter().filter(|c| c.health != Health::Healthy).cloned().collect();
    // Stable: within one health the children keep their order.
    reasons.sort_by_key(|c| std::cmp::Reverse(c.health));
    Rollup { name: name.into(), health, children: children.len(), reasons }
}

/// The lab's verdict from its components' (each a child named by the component, with its
/// worst reason): the worst of them.
pub fn lab(components: &[Rollup]) -> Rollup {
    let children: Vec<Child> = components
        .iter()
        .map(|c| Child {
            subject: c.name.clone(),
            health: c.health,
            reason: c.reasons.first().map(ToString::to_string).unwrap_or_default(),
        })
        .collect();
    rollup("lab", &children)
}

/// A node container as Docker shows it: `running` is Healthy, `created` or `restarting`
/// Progressing, anything else (exited, dead, paused) Degraded; absent is Unknown.
pub fn container(name: &str, state: Option<&str>) -> Child {
    let subject = format!("node {name}");
    match state {
        None => Child::unknown(subject, "Docker does not show the container"),
        Some("running") => Child { subject, health: Health::Healthy, reason: String::new() },
        Some(s @ ("created" | "restarting")) => Child { subject, health: Health::Progressing, reason: s.to_owned() },
        Some(s) => Child { subject, health: Health::Degraded, reason: format!("the container is {s}") },
    }
}

/// Vault's seal status as its API reports it (`GET /v1/sys/seal-status`): unsealed is
/// Healthy, sealed Degraded (its pods stay unready and nothing reads secrets until it is
/// unsealed), not initialised Progressing; unreachable is Unknown.
pub fn vault(initialized: Option<bool>, sealed: Option<bool>) -> Child {
    let subject = "Vault".to_owned();
    match (initialized, sealed) {
        (Some(false), _) => Child { subject, health: Health::Progressing, reason: "Vault is not initialised".into() },
        (_, Some(true)) => Child { subject, health: Health::Degraded, reason: "Vault is sealed".into() },
        (_, Some(false)) => Child { subject, health: Health::Healthy, reason: String::new() },
        _ => Child::unknown(subject, "Vault's seal status could not be read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(subject: &str, health: Health, reason: &str) -> Child {
        Child { subject: subject.into(), health, reason: reason.into() }
    }

    #[test]
    fn the_worst_child_decides_and_unknown_is_worst() {
        use Health::*;
        assert!(Healthy < Progressing && Progressing < Degraded && Degraded < Unknown);
        let cases: &[(&[Health], Health)] = &[
            (&[], Healthy),
            (&[Healthy, Healthy], Healthy),
            (&[Healthy, Progressing], Progressing),
            (&[Progressing, Degraded, Healthy], Degraded),
            (&[Degraded, Unknown], Unknown),
            (&[Unknown, Healthy], Unknown),
        ];
        for (healths, expected) in cases {
            let children: Vec<Child> = healths.iter().enumerate().map(|(i, h)| child(&format!("c{i}"), *h, "why")).collect();
            let r = rollup("x", &children);
            assert_eq!(r.health, *expected, "{healths:?}");
            assert_eq!(r.children, healths.len());
            assert_eq!(r.reasons.len(), healths.iter().filter(|h| **h != Healthy).count(), "{healths:?}");
        }
    }

    #[test]
    fn reasons_are_the_unhealthy_children_worst_first_in_order() {
        let children = [
            child("Deployment a/web", Health::Progressing, "0/1 available"),
            child("ConfigMap a/c", Health::Healthy, ""),
            child("Certificate a/tls", Health::Degraded, "Ready=False: issuer not found"),
            child("Deployment a/api", Health::Progressing, "1/2 available"),
        ];
        let r = rollup("apps", &children);
        let subjects: Vec<&str> = r.reasons.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(subjects, ["Certificate a/tls", "Deployment a/web", "Deployment a/api"]);
        assert_eq!(r.reasons[0].to_string(), "Certificate a/tls: Degraded (Ready=False: issuer not found)");
    }

    #[test]
    fn the_lab_is_its_worst_component_with_that_components_reason() {
        let platform = rollup("platform", &[vault(Some(true), Some(true)), child("Deployment vault/injector", Health::Healthy, "")]);
        let cluster = rollup("cluster", &[container("lab-server-0", Some("running")), container("lab-agent-0", Some("exited"))]);
        let lab = lab(&[cluster.clone(), platform.clone()]);
        assert_eq!(lab.health, Health::Degraded);
        assert_eq!(lab.reasons.len(), 2);
        assert_eq!(lab.reasons[0].subject, "cluster");
        assert_eq!(lab.reasons[0].reason, "node lab-agent-0: Degraded (the container is exited)");
        assert_eq!(lab.reasons[1].reason, "Vault: Degraded (Vault is sealed)");
        assert_eq!(super::lab(&[]).health, Health::Healthy);
    }

    #[test]
    fn containers_and_vault_are_judged_from_their_own_words() {
        assert_eq!(container("n", None).health, Health::Unknown);
        assert_eq!(container("n", Some("running")).health, Health::Healthy);
        assert_eq!(container("n", Some("restarting")).health, Health::Progressing);
        assert_eq!(container("n", Some("paused")).health, Health::Degraded);
        assert_eq!(vault(Some(true), Some(false)).health, Health::Healthy);
        assert_eq!(vault(Some(false), Some(true)).health, Health::Progressing);
        assert_eq!(vault(None, None).health, Health::Unknown);
        assert_eq!(vault(Some(true), Some(true)).reason, "Vault is sealed");
    }

    #[test]
    fn healthy_children_serialise_without_a_reason() {
        let json = serde_json::to_value(child("x", Health::Healthy, "")).expect("json");
        assert_eq!(json, serde_json::json!({ "subject": "x", "health": "Healthy" }));
    }
}
