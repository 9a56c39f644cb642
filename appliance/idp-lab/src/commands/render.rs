//! `idp-lab render`: every object the lab would apply, in apply order.

use crate::cli::{Global, Output, RenderArgs};
use crate::context::Context;
use crate::exit::{Failure, INPUT, IO, PORT};
use crate::printer::{Printer, write_stdout};
use idp_core::render::{self, Rendered, Vars};
use idp_planes::net;

pub fn run(global: &Global, printer: Printer, args: RenderArgs) -> Result<(), Failure> {
    let ctx = Context::load(global, None)?;
    let network = &ctx.config.network;
    let lan = if network.needs_lan_ip() { net::detect_lan_ip() } else { None };
    if network.needs_lan_ip() && lan.is_none() {
        return Err(Failure::new(
            INPUT,
            "network.lan_ip is \"auto\" but no LAN address was found (no default route); set network.lan_ip or network.dns_suffix",
        ));
    }
    let suffix = network.resolved_dns_suffix(lan);
    let https = net::pick_port(network.bind_address, network.https_port, 443, 8443).map_err(|e| Failure::new(PORT, e.to_string()))?;
    let vars = Vars::new(&ctx.config, &suffix, https);
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
