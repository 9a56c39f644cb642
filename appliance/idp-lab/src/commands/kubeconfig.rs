//! `idp-lab kubeconfig`: print the lab's kubeconfig (contexts named `idp-lab-<lab>`).

use crate::cli::{Global, LabArgs};
use crate::exit::{Failure, NOT_FOUND};
use crate::lab::{self, Lab};
use crate::printer::{Printer, write_stdout};

pub fn run(global: &Global, _printer: Printer, args: LabArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args)?;
    let path = lab::kubeconfig_path(&lab.dir());
    let text = std::fs::read_to_string(&path).map_err(|_| {
        Failure::new(
            NOT_FOUND,
            format!("lab {:?} has no kubeconfig ({} is missing); `idp-lab up --name {}` writes it", lab.name, path.display(), lab.name),
        )
    })?;
    write_stdout(&text)
}
