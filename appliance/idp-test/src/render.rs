//! The embedded platform as every profile renders it, for tests that take it to a
//! control plane.

use anyhow::Context as _;
use idp_core::catalogue::Catalogue;
use idp_core::profiles::{self, Inputs};
use idp_core::render::{self, Rendered, Vars};

/// Every profile's name with its render, as `idp-lab render --profile NAME` makes it on
/// a host where every port is free.
pub fn every_profile() -> anyhow::Result<Vec<(String, Rendered)>> {
    let catalogue = Catalogue::load().context("the embedded catalogue does not load")?;
    let mut out = Vec::new();
    for profile in profiles::names() {
        let inputs = Inputs { profile_flag: Some(&profile), ..Inputs::default() };
        let config = profiles::resolve(&inputs, &catalogue.chart_components()).with_context(|| format!("profile {profile}"))?;
        let settings = idp_core::settings::resolve(&config, &idp_core::settings::Probes::default())
            .with_context(|| format!("the settings of profile {profile}"))?;
        let vars = Vars::new(&config, &settings.network);
        let rendered = render::render(&config, &catalogue, &vars).with_context(|| format!("the render of profile {profile}"))?;
        out.push((profile, rendered));
    }
    Ok(out)
}
