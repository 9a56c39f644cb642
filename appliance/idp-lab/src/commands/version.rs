//! `idp-lab version`.

use crate::exit::Failure;
use crate::printer::Printer;
use serde::Serialize;

#[derive(Serialize)]
struct Version {
    version: &'static str,
    k3s_image: &'static str,
    kind_image: &'static str,
    state_schema: u32,
}

pub fn run(printer: Printer) -> Result<(), Failure> {
    use idp_state::Record;
    let v = Version {
        version: env!("CARGO_PKG_VERSION"),
        k3s_image: idp_core::config::K3S_IMAGE,
        kind_image: idp_core::config::KIND_IMAGE,
        state_schema: idp_state::LabRecord::SCHEMA_VERSION,
    };
    printer.result(
        || {
            format!(
                "idp-lab {}\nk3s node image:  {}\nkind node image: {}\nstate schema:    {}\n",
                v.version, v.k3s_image, v.kind_image, v.state_schema
            )
        },
        &v,
    )
}
