//! Rebuild when the embedded data changes (rust-embed includes the files, but cargo
//! only notices new files when told to watch the folders).
fn main() {
    for dir in ["../../embedded", "../../profiles", "../../images"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
