//! `idp-lab diff`: what `apply` would change, with `kubectl diff`'s exit codes (0 no
//! drift, 1 drift, 2 and up errors).

use crate::cli::{DiffArgs, Global};
use crate::exit::{DIFFERENCE, Failure};
use crate::lab::runtime;
use crate::manifests;
use crate::printer::Printer;
use idp_kube::DiffReport;

pub fn run(global: &Global, printer: Printer, args: DiffArgs) -> Result<(), Failure> {
    let objects = manifests::load(&args.input)?;
    runtime()?.block_on(async {
        let (cluster, lab) = manifests::connect(global, &args.target).await?;
        let options = manifests::options(&args.input, &lab)?;
        let read = manifests::read_cache(cluster.server());
        let mut cache = read.clone();
        let result = cluster.diff(objects, &options, &mut cache).await;
        manifests::save_cache(cluster.server(), &read, &cache);
        let report = result.map_err(manifests::failure)?;
        printer.result(|| text(&report), &report)?;
        if report.drifted.is_empty() { Ok(()) } else { Err(Failure::silent(DIFFERENCE)) }
    })
}

/// Each drifted object with its unified diff, then a summary line on stderr's behalf.
fn text(report: &DiffReport) -> String {
    let mut out = String::new();
    for object in &report.drifted {
        let what = if object.exists { "differs" } else { "does not exist" };
        out.push_str(&format!("# {} {what}\n", object.object));
        out.push_str(&object.unified);
    }
    out
}
