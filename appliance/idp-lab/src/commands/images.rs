//! `idp-lab images list`.

use crate::cli::{Global, ImagesCommand};
use crate::context::Context;
use crate::exit::Failure;
use crate::printer::{Printer, table};
use serde::Serialize;

#[derive(Serialize)]
struct Listed<'a> {
    component: &'a str,
    image: &'a str,
    unverified: bool,
}

pub fn run(global: &Global, printer: Printer, cmd: ImagesCommand) -> Result<(), Failure> {
    let ImagesCommand::List = cmd;
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
