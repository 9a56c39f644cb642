//! `idp-lab render`: every object the lab would apply, in apply order.

use crate::cli::{Global, Output, RenderArgs};
use crate::context::Context;
use crate::exit::{Failure, IO};
use crate::printer::{Printer, write_stdout};
use idp_core::render::{self, Rendered, Vars};

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
    let rendered = render::render(&ctx.config, &ctx.catalogue, &vars)?;
    tracing::info!(profile = %ctx.config.lab.profile, dns_suffix = %suffix, https_port = https, objects = rendered.objects().count(), "rendered");
    match &args.out {
        Some(dir) => write_waves(&rendered, dir),
        None => match printer.output {
            Output::Text | Output::Yaml => write_stdout(&Rendered::to_yaml_stream(&rendered.components)),
            Output::Json => printer.result(String::new, &rendered.to_json()),
        },
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
