//! `idp-lab images list`.

use crate::cli::{Global, ImagesCommand, ImportArgs};
use crate::context::Context;
use crate::exit::{Failure, NOT_FOUND};
use crate::lab::{self, Lab, provision_failure};
use crate::printer::{Printer, table};
use serde::Serialize;

#[derive(Serialize)]
struct Listed<'a> {
    component: &'a str,
    image: &'a str,
    unverified: bool,
}

pub fn run(global: &Global, printer: Printer, cmd: ImagesCommand) -> Result<(), Failure> {
    match cmd {
        ImagesCommand::List => list(global, printer),
        ImagesCommand::Import(args) => import(global, printer, args),
    }
}

/// Copies images (from the host's Docker) and tarballs into every node's k3s images
/// directory; k3s imports them from there.
fn import(global: &Global, printer: Printer, args: ImportArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args.lab)?;
    let (tarballs, images): (Vec<&String>, Vec<&String>) = args.sources.iter().partition(|s| std::path::Path::new(s).is_file());
    lab::runtime()?.block_on(async {
        let engine = lab::engine().await?;
        let nodes = engine.node_names(&lab.name).await.map_err(provision_failure)?;
        if nodes.is_empty() {
            return Err(Failure::new(NOT_FOUND, format!("lab {:?} has no nodes; `idp-lab up --name {}` makes them", lab.name, lab.name)));
        }
        let images: Vec<String> = images.into_iter().cloned().collect();
        let tarballs: Vec<std::path::PathBuf> = tarballs.into_iter().map(std::path::PathBuf::from).collect();
        let files = engine.import_images(&nodes, &images, &tarballs).await.map_err(provision_failure)?;
        printer.result(
            || {
                format!(
                    "Imported {} into {} nodes ({}): {}
",
                    args.sources.join(", "),
                    nodes.len(),
                    idp_core::cluster::IMAGES_DIR,
                    files.join(", ")
                )
            },
            &serde_json::json!({ "lab": lab.name, "nodes": nodes, "files": files, "directory": idp_core::cluster::IMAGES_DIR }),
        )
    })
}

fn list(global: &Global, printer: Printer) -> Result<(), Failure> {
    let ctx = Context::load(global, None)?;
    let listed: Vec<Listed<'_>> = ctx
        .catalogue
        .enabled(&ctx.config.stacks)
        .flat_map(|c| c.images.iter().map(move |i| Listed { component: &c.name, image: &i.reference, unverified: i.unverified }))
        .collect();
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|l| vec![l.component.to_owned(), l.image.to_owned(), if l.unverified { "unverified".into() } else { "pinned".into() }])
        .collect();
    printer.result(|| table(&["COMPONENT", "IMAGE", "TAG"], &rows), &listed)
}
