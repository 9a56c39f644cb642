//! The bootstrap sequence of `up` (pure): the rendered components in the order the
//! platform needs them, grouped into named phases, with the steps idp-lab itself does
//! between them.
//!
//! 1. **crds**: namespaces, PriorityClasses, the Gateway API and Prometheus Operator CRDs;
//! 2. **cni**: Cilium, then every node Ready ([`Hook::NodesReady`]);
//! 3. **certificates**: cert-manager, the lab CA Secret from the host edge's CA
//!    ([`Hook::LabCaSecret`]), the PKI;
//! 4. **vault**: Vault, then initialised, unsealed and seeded ([`Hook::VaultInit`]);
//! 5. **external-secrets**: ESO and its SecretStores;
//! 6. **argocd**: Argo CD and its AppProjects (the stacks' charts and artifacts were
//!    pushed to the lab registry before the first phase: offline, the bootstrap charts
//!    come from there too);
//! 7. **gateway**: the Gateway;
//! 8. **stacks**: every component Argo CD delivers.
//!
//! Phases are cut by wave (`crds` below 20, `cni` below 30, `certificates` and `vault` below
//! 40, `external-secrets` below 50, `argocd` below 60, `gateway` below 100, `stacks` from
//! 100), so a new component falls into a phase by its wave. Each phase waits on the apply
//! engine's readiness and its components' `readiness` entries before the next starts.

use crate::catalogue::Catalogue;
use crate::render::Rendered;

/// Something idp-lab does itself between components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// Wait until every node is Ready (the CNI runs).
    NodesReady,
    /// Write the lab CA (the host edge's, which the host trusts) as the Secret the PKI's
    /// `ca-issuer` signs with.
    LabCaSecret,
    /// Initialise (once), unseal and seed Vault; keep its keys.
    VaultInit,
}

impl Hook {
    /// What it does, for progress lines.
    pub fn describe(self) -> &'static str {
        match self {
            Hook::NodesReady => "every node Ready",
            Hook::LabCaSecret => "the lab CA Secret",
            Hook::VaultInit => "Vault initialised, unsealed and seeded",
        }
    }
}

/// One component of a phase, with what idp-lab does before and after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The component.
    pub component: String,
    /// Done before its objects are applied.
    pub before: Option<Hook>,
    /// Done once it is ready.
    pub after: Option<Hook>,
}

/// A phase of the bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// Its name: `crds`, `cni`, ...
    pub name: &'static str,
    /// Its components, in render order.
    pub steps: Vec<Step>,
}

/// The phases' names and the wave each starts at.
const PHASES: &[(&str, i32)] =
    &[("crds", i32::MIN), ("cni", 20), ("certificates", 30), ("external-secrets", 40), ("argocd", 50), ("gateway", 60), ("stacks", 100)];

/// The hooks of a component, by name: (before, after).
fn hooks(component: &str) -> (Option<Hook>, Option<Hook>) {
    match component {
        "cilium" => (None, Some(Hook::NodesReady)),
        "pki" => (Some(Hook::LabCaSecret), None),
        "vault" => (None, Some(Hook::VaultInit)),
        _ => (None, None),
    }
}

/// The bootstrap phases of `rendered` (empty phases left out). `catalogue` is not read
/// yet: the phase of a component is its wave's.
pub fn phases(rendered: &Rendered, _catalogue: &Catalogue) -> Vec<Phase> {
    let mut out: Vec<Phase> = Vec::new();
    for c in &rendered.components {
        let name = PHASES.iter().rev().find(|(_, from)| c.wave >= *from).map_or("crds", |(name, _)| *name);
        // Vault gets a phase of its own inside the certificates band: after cert-manager
        // and the PKI, which it does not need, so its init happens once they are ready.
        let name = if c.name == "vault" { "vault" } else { name };
        let (before, after) = hooks(&c.name);
        let step = Step { component: c.name.clone(), before, after };
        match out.iter_mut().find(|p| p.name == name) {
            Some(phase) => phase.steps.push(step),
            None => out.push(Phase { name, steps: vec![step] }),
        }
    }
    // The issue's order: vault after the certificates, before external-secrets.
    let rank = |name: &str| match name {
        "crds" => 0,
        "cni" => 1,
        "certificates" => 2,
        "vault" => 3,
        "external-secrets" => 4,
        "argocd" => 5,
        "gateway" => 6,
        _ => 7,
    };
    out.sort_by_key(|p| rank(p.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{RenderedComponent, Vars};

    fn full() -> (Catalogue, Rendered) {
        let catalogue = Catalogue::load().expect("catalogue");
        let inputs = crate::profiles::Inputs { profile_flag: Some("full"), ..Default::default() };
        let config = crate::profiles::resolve(&inputs, &catalogue.chart_components()).expect("profile");
        let settings = crate::settings::resolve(&config, &crate::settings::Probes::default()).expect("settings");
        let rendered = crate::render::render(&config, &catalogue, &Vars::new(&config, &settings.network)).expect("renders");
        (catalogue, rendered)
    }

    #[test]
    fn the_full_platform_boots_in_the_issues_order() {
        let (catalogue, rendered) = full();
        let phases = phases(&rendered, &catalogue);
        let names: Vec<&str> = phases.iter().map(|p| p.name).collect();
        assert_eq!(names, ["crds", "cni", "certificates", "vault", "external-secrets", "argocd", "gateway", "stacks"]);
        let of = |name: &str| {
            phases.iter().find(|p| p.name == name).expect("phase").steps.iter().map(|s| s.component.as_str()).collect::<Vec<_>>()
        };
        assert!(of("crds").contains(&"gateway-api-crds") && of("crds").contains(&"prometheus-operator-crds"));
        assert_eq!(of("cni"), ["cilium"]);
        assert_eq!(of("certificates"), ["cert-manager", "pki"]);
        assert_eq!(of("vault"), ["vault"]);
        assert_eq!(of("external-secrets"), ["external-secrets"]);
        assert_eq!(of("argocd"), ["argocd", "argocd-secrets", "gitops"]);
        assert_eq!(of("gateway"), ["gateway"]);
        assert!(of("stacks").len() >= 12 && of("stacks").contains(&"kyverno") && of("stacks").contains(&"backstage"));
        // Every rendered component is in exactly one phase.
        let mut all: Vec<&str> = phases.iter().flat_map(|p| p.steps.iter().map(|s| s.component.as_str())).collect();
        assert_eq!(all.len(), rendered.components.len());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), rendered.components.len());
        let step = |c: &str| phases.iter().flat_map(|p| &p.steps).find(|s| s.component == c).expect("step").clone();
        assert_eq!(step("cilium").after, Some(Hook::NodesReady));
        assert_eq!(step("pki").before, Some(Hook::LabCaSecret));
        assert_eq!(step("vault").after, Some(Hook::VaultInit));
        assert_eq!((step("gitops").before, step("gitops").after), (None, None));
        assert_eq!((step("kyverno").before, step("kyverno").after), (None, None));
    }

    #[test]
    fn a_new_component_falls_into_the_phase_of_its_wave() {
        let (catalogue, _) = full();
        let component = |name: &str, wave: i32| RenderedComponent { name: name.into(), wave, items: Vec::new(), delivered: Vec::new() };
        let rendered = Rendered { components: vec![component("early", 5), component("late", 250), component("mid", 45)] };
        let phases = phases(&rendered, &catalogue);
        let names: Vec<(&str, &str)> = phases.iter().flat_map(|p| p.steps.iter().map(move |s| (p.name, s.component.as_str()))).collect();
        assert_eq!(names, [("crds", "early"), ("external-secrets", "mid"), ("stacks", "late")]);
    }
}
