//! A component's policy and its ignore rules. Pure.
//!
//! An [`IgnoreRule`] names drift by kind, field path and field manager; every condition
//! it sets must hold. A matching field is not drift at all, or, with `report_only`, is
//! reported but never healed (the reference's §7a.9: a `kubectl.kubernetes.io/restartedAt`
//! in a pod template is a restart someone asked for, and reverting it would restart again).

use idp_core::objects::Identity;
use serde::{Deserialize, Serialize};

use super::managers::{PathError, Segment, covers, parse_path, parse_pattern};

/// What the watchdog does about a component's drift.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Report it, never change the cluster.
    Report,
    /// Report it and re-apply the object (the default, as for platform components).
    #[default]
    Heal,
}

/// Drift that is not to be reported (or, with `report_only`, not to be healed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRule {
    /// `Kind` (any group) or `Kind.group` (`Deployment.apps`); any kind when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A field path as drift names it (`spec.replicas`, `data["a.b"]`), where `*` is any
    /// key and `[*]` any list index; the field and everything below it. Any field when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A field manager (`kube-controller-manager`, `hpa-controller`): fields it changed.
    /// Any manager when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Report the drift, but never heal the object for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report_only: bool,
}

/// An ignore rule that does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// It sets no condition, so it would ignore everything.
    #[error("an ignore rule needs a kind, a path or a manager (one without any would ignore all drift; use policy report instead)")]
    Empty,
    /// Its path does not read.
    #[error("an ignore rule's path does not read")]
    Path(#[source] PathError),
    /// Its path is empty.
    #[error("an ignore rule's path is empty; leave it out to match every field")]
    EmptyPath,
    /// Its kind is empty, or `.group` without a kind.
    #[error("an ignore rule's kind {0:?} is not `Kind` or `Kind.group`")]
    Kind(String),
}

/// What the rules make of one drifted field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Drift: report it, heal it under policy `heal`.
    Drift,
    /// Report it, never heal for it.
    ReportOnly,
    /// Not drift.
    Ignored,
}

/// An [`IgnoreRule`] checked and read, ready to match.
#[derive(Debug, Clone)]
pub struct Compiled {
    kind: Option<(String, Option<String>)>,
    path: Option<Vec<Segment>>,
    manager: Option<String>,
    report_only: bool,
}

impl IgnoreRule {
    /// Checks and reads the rule.
    pub fn compile(&self) -> Result<Compiled, RuleError> {
        if self.kind.is_none() && self.path.is_none() && self.manager.is_none() {
            return Err(RuleError::Empty);
        }
        let kind = match &self.kind {
            None => None,
            Some(text) => {
                let (kind, group) = match text.split_once('.') {
                    Some((kind, group)) => (kind, Some(group.to_owned())),
                    None => (text.as_str(), None),
                };
                if kind.is_empty() || group.as_deref() == Some("") {
                    return Err(RuleError::Kind(text.clone()));
                }
                Some((kind.to_owned(), group))
            }
        };
        let path = match &self.path {
            None => None,
            Some(text) => {
                let segments = parse_pattern(text).map_err(RuleError::Path)?;
                if segments.is_empty() {
                    return Err(RuleError::EmptyPath);
                }
                Some(segments)
            }
        };
        Ok(Compiled { kind, path, manager: self.manager.clone(), report_only: self.report_only })
    }
}

impl Compiled {
    /// Whether the rule matches the field `path` (a drift path) of `object`, changed by
    /// `manager`. A path rule never matches the whole object (an empty path: it is
    /// missing), nor a path that does not read; a manager rule never matches a field
    /// whose manager is unknown.
    pub fn matches(&self, object: &Identity, path: &str, manager: Option<&str>) -> bool {
        if let Some((kind, group)) = &self.kind
            && (*kind != object.kind || group.as_ref().is_some_and(|g| *g != object.group))
        {
            return false;
        }
        if let Some(wanted) = &self.manager
            && manager != Some(wanted.as_str())
        {
            return false;
        }
        match &self.path {
            None => true,
            Some(pattern) => parse_path(path).is_ok_and(|segments| !segments.is_empty() && covers(pattern, &segments)),
        }
    }
}

/// What `rules` make of the field `path` of `object` changed by `manager`: ignored if any
/// matching rule ignores it, else report-only if any matching rule says so, else drift.
pub fn verdict(rules: &[Compiled], object: &Identity, path: &str, manager: Option<&str>) -> Verdict {
    let mut verdict = Verdict::Drift;
    for rule in rules.iter().filter(|r| r.matches(object, path, manager)) {
        if !rule.report_only {
            return Verdict::Ignored;
        }
        verdict = Verdict::ReportOnly;
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(group: &str, kind: &str) -> Identity {
        Identity { group: group.into(), kind: kind.into(), namespace: "n".into(), name: "a".into() }
    }

    fn rule(kind: Option<&str>, path: Option<&str>, manager: Option<&str>) -> Compiled {
        IgnoreRule { kind: kind.map(Into::into), path: path.map(Into::into), manager: manager.map(Into::into), report_only: false }
            .compile()
            .expect("a valid rule")
    }

    #[test]
    fn kinds_match_with_or_without_their_group() {
        let deployment = identity("apps", "Deployment");
        assert!(rule(Some("Deployment"), None, None).matches(&deployment, "spec.replicas", None));
        assert!(rule(Some("Deployment.apps"), None, None).matches(&deployment, "", None), "a kind rule covers a missing object");
        assert!(!rule(Some("Deployment.extensions"), None, None).matches(&deployment, "spec.replicas", None));
        assert!(!rule(Some("StatefulSet"), None, None).matches(&deployment, "spec.replicas", None));
        assert!(!rule(Some("deployment"), None, None).matches(&deployment, "spec.replicas", None), "kinds are case-sensitive");
        assert!(rule(Some("ConfigMap"), None, None).matches(&identity("", "ConfigMap"), "data.a", None));
    }

    #[test]
    fn paths_match_the_field_and_below() {
        let object = identity("apps", "Deployment");
        let r = rule(None, Some("spec.template.spec.containers[*].image"), None);
        assert!(r.matches(&object, "spec.template.spec.containers[1].image", Some("x")));
        assert!(!r.matches(&object, "spec.template.spec.containers[1].name", Some("x")));
        assert!(!r.matches(&object, "", None), "not the whole object");
        assert!(!r.matches(&object, "not a path", None));
        let annotation = rule(None, Some("metadata.annotations[\"example.com/touched\"]"), None);
        assert!(annotation.matches(&object, "metadata.annotations[\"example.com/touched\"]", None));
        assert!(!annotation.matches(&object, "metadata.annotations[\"example.com/other\"]", None));
    }

    #[test]
    fn managers_match_exactly_and_never_an_unknown_one() {
        let object = identity("", "ConfigMap");
        let r = rule(None, None, Some("hpa-controller"));
        assert!(r.matches(&object, "data.a", Some("hpa-controller")));
        assert!(!r.matches(&object, "data.a", Some("hpa-controller-2")));
        assert!(!r.matches(&object, "data.a", None));
        let all = rule(Some("ConfigMap"), Some("data.a"), Some("m"));
        assert!(all.matches(&object, "data.a", Some("m")));
        assert!(!all.matches(&object, "data.b", Some("m")), "every condition must hold");
        assert!(!all.matches(&identity("", "Secret"), "data.a", Some("m")));
    }

    #[test]
    fn an_ignoring_rule_beats_a_report_only_one() {
        let object = identity("apps", "Deployment");
        let soft = IgnoreRule {
            path: Some("spec.template.metadata.annotations[\"kubectl.kubernetes.io/restartedAt\"]".into()),
            report_only: true,
            ..IgnoreRule::default()
        }
        .compile()
        .expect("valid");
        let restarted = "spec.template.metadata.annotations[\"kubectl.kubernetes.io/restartedAt\"]";
        assert_eq!(verdict(std::slice::from_ref(&soft), &object, restarted, Some("kubectl-rollout")), Verdict::ReportOnly);
        assert_eq!(verdict(std::slice::from_ref(&soft), &object, "spec.replicas", None), Verdict::Drift);
        let ignore = rule(Some("Deployment"), None, Some("kubectl-rollout"));
        assert_eq!(verdict(&[soft.clone(), ignore], &object, restarted, Some("kubectl-rollout")), Verdict::Ignored);
        assert_eq!(verdict(&[], &object, restarted, None), Verdict::Drift);
    }

    #[test]
    fn rules_that_make_no_sense_are_refused() {
        assert_eq!(IgnoreRule::default().compile().err(), Some(RuleError::Empty));
        assert_eq!(IgnoreRule { report_only: true, ..IgnoreRule::default() }.compile().err(), Some(RuleError::Empty));
        for kind in ["", ".apps", "Deployment."] {
            let e = IgnoreRule { kind: Some(kind.into()), ..IgnoreRule::default() }.compile().err();
            assert_eq!(e, Some(RuleError::Kind(kind.into())), "{kind:?}");
        }
        let e = IgnoreRule { path: Some("spec..replicas".into()), ..IgnoreRule::default() }.compile().err();
        assert!(matches!(e, Some(RuleError::Path(_))), "{e:?}");
        let e = IgnoreRule { path: Some(String::new()), ..IgnoreRule::default() }.compile().err();
        assert_eq!(e, Some(RuleError::EmptyPath));
    }

    #[test]
    fn rules_and_policies_read_from_json() {
        let rule: IgnoreRule = serde_json::from_str(r#"{"kind": "Deployment.apps", "path": "spec.replicas"}"#).expect("reads");
        assert_eq!(rule.kind.as_deref(), Some("Deployment.apps"));
        assert!(!rule.report_only);
        assert!(serde_json::from_str::<IgnoreRule>(r#"{"kinds": "X"}"#).is_err(), "unknown keys are refused");
        assert_eq!(serde_json::to_string(&rule).expect("writes"), r#"{"kind":"Deployment.apps","path":"spec.replicas"}"#);
        assert_eq!(serde_json::from_str::<Policy>(r#""report""#).expect("reads"), Policy::Report);
        assert_eq!(Policy::default(), Policy::Heal);
    }
}
