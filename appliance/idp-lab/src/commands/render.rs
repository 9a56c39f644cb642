//! `idp-lab render`: every object the lab would apply, in apply order. Upstream
//! manifests are references (a comment block, or a `reference` item in JSON), or, with
//! `--bundle FILE`, their objects read from the bundle.

use crate::cli::{Global, Output, RenderArgs};
use crate::context::Context;
use crate::exit::{Failure, INPUT, IO};
use crate::printer::{Printer, write_stdout};
use idp_bundle::BundleError;
use idp_core::render::{self, Item, Rendered, Vars};
use std::path::Path;

pub fn run(global: &Global, printer: Printer, args: RenderArgs) -> Result<(), Failure> {
    let ctx = Context::load(global, None)?;
    // For a lab that exists, the ports its first `up` pinned; else what `up` would pick now.
    let settings = ctx.settings()?;
    let (suffix, https) = (settings.network.dns_suffix.clone(), settings.network.ports.https);
    let mut vars = Vars::new(&ctx.config, &settings.network);
    // For a lab that exists, its registry on its network's gateway.
    if let Some(plan) = crate::context::lab_record(&ctx.config.lab.name)?.and_then(|r| r.plan) {
        vars = vars.with_gateway(plan.network.gateway);
    }
    let mut rendered = render::render(&ctx.config, &ctx.catalogue, &vars)?;
    if let Some(bundle) = &args.bundle {
        with_upstream(&mut rendered, bundle, &ctx.config.lab.profile)?;
    }
    tracing::info!(profile = %ctx.config.lab.profile, dns_suffix = %suffix, https_port = https, objects = rendered.objects().count(), "rendered");
    match &args.out {
        Some(dir) => write_waves(&rendered, dir),
        None => match printer.output {
            Output::Text | Output::Yaml => write_stdout(&Rendered::to_yaml_stream(&rendered.components)),
            Output::Json => printer.result(String::new, &rendered.to_json()),
        },
    }
}

/// Replaces every upstream reference of `rendered` by its file's objects, read from
/// `bundle` and checked against the reference's sha256: each YAML document as upstream
/// wrote it (no label, nothing added), in the reference's place.
fn with_upstream(rendered: &mut Rendered, bundle: &Path, profile: &str) -> Result<(), Failure> {
    for component in &mut rendered.components {
        let mut items = Vec::with_capacity(component.items.len());
        for item in std::mem::take(&mut component.items) {
            let Item::Reference { url, sha256, .. } = &item else {
                items.push(item);
                continue;
            };
            let expected = (sha256 != "unverified").then_some(sha256.as_str());
            let bytes = idp_bundle::read_file(bundle, url, expected).map_err(|e| bundle_failure(&e, bundle, profile))?;
            let unreadable = |why: String| Failure::new(INPUT, format!("{url} in the bundle {} {why}", bundle.display()));
            let text = String::from_utf8(bytes).map_err(|_| unreadable("is not UTF-8 text".into()))?;
            let docs = idp_core::yaml::parse_documents(&text).map_err(|e| unreadable(format!("does not parse as YAML: {e}")))?;
            items.extend(docs.into_iter().map(Item::Object));
        }
        component.items = items;
    }
    Ok(())
}

/// A bundle that cannot give an upstream file: exit 6 (IO) when it cannot be read, else
/// 2 (INPUT): it lacks the file, holds other bytes, or is damaged or no bundle.
fn bundle_failure(e: &BundleError, bundle: &Path, profile: &str) -> Failure {
    match e {
        BundleError::Io { .. } => Failure::new(IO, idp_bundle::bundle::chain(e)),
        BundleError::NoFile { url, .. } => Failure::new(
            INPUT,
            format!(
                "the bundle {} holds no upstream file {url}; make it on a connected machine with `idp-lab bundle create --profile {profile} --out {}`, or render without --bundle",
                bundle.display(),
                bundle.display()
            ),
        ),
        _ => Failure::new(INPUT, idp_bundle::bundle::chain(e)),
    }
}

/// Writes `wave-NNN.yaml` per wave into `dir` (created if needed); stale wave files of an
/// earlier render are removed so the folder matches this render exactly.
fn write_waves(rendered: &Rendered, dir: &std::path::Path) -> Result<(), Failure> {
    let io = |what: &str, e: std::io::Error| Failure::new(IO, format!("failed to {what} {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| io("read", e))? {
        let path = entry.map_err(|e| io("read", e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("wave-") && name.ends_with(".yaml") {
            std::fs::remove_file(&path).map_err(|e| io("clean", e))?;
        }
    }
    for (wave, components) in rendered.waves() {
        let path = dir.join(format!("wave-{:03}.yaml", wave.max(0)));
        std::fs::write(&path, Rendered::to_yaml_stream(components))
            .map_err(|e| Failure::new(IO, format!("failed to write {}: {e}", path.display())))?;
        write_stdout(&format!("{}\n", path.display()))?;
    }
    Ok(())
}
