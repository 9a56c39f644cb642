//! `idp-lab logs [NODE] [-f]`: a node's log (default: the first server).

use crate::cli::{Global, LogsArgs};
use crate::exit::Failure;
use crate::lab::{self, Lab, provision_failure};
use crate::printer::Printer;

pub fn run(global: &Global, _printer: Printer, args: LogsArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args.lab)?;
    lab::runtime()?.block_on(async {
        let engine = lab::engine().await?;
        let nodes = engine.node_names(&lab.name).await.map_err(provision_failure)?;
        let given = args.node.clone().unwrap_or_else(|| "server-0".to_owned());
        let node = lab::node_name(&lab.name, &given, &nodes)?;
        let mut out = crate::printer::raw_stdout();
        engine.stream_log(&node, args.follow, &mut out).await.map_err(provision_failure)
    })
}
