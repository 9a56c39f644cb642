//! The data compiled into the binary: the platform catalogue, the profiles and the
//! image lists. Embedded in every build (`debug-embed`), so the binary needs no files.

use rust_embed::RustEmbed;

/// `embedded/`: the platform catalogue.
#[derive(RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../../embedded"]
pub struct Embedded;

/// `profiles/`: the profiles.
#[derive(RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../../profiles"]
#[include = "*.toml"]
pub struct Profiles;

/// `images/`: the pinned image lists.
#[derive(RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../../images"]
#[include = "*.txt"]
pub struct Images;

/// The text of an embedded file, or `None` if it is missing or not UTF-8.
pub fn text<E: RustEmbed>(path: &str) -> Option<String> {
    let file = E::get(path)?;
    String::from_utf8(file.data.into_owned()).ok()
}

/// The sorted paths of an embedded folder.
pub fn paths<E: RustEmbed>() -> Vec<String> {
    let mut paths: Vec<String> = E::iter().map(|p| p.into_owned()).collect();
    paths.sort();
    paths
}
