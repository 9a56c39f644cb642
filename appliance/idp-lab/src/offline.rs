//! Offline `up` (`registry.offline = true`): everything the nodes need comes from the
//! bundle, checked before anything is made. The node image is loaded into Docker from it
//! (as a docker-archive, the form Docker 20.10 loads), k3s' air-gap images are written as
//! one docker-archive that every node mounts into its images directory, and the rest is
//! served by the lab daemon's registry, which every node's `registries.yaml` mirrors
//! (with `--disable-default-registry-endpoint`, so nothing upstream is tried).

use crate::context::Context;
use crate::exit::{DOCKER, Failure, IO, PREFLIGHT};
use idp_core::cluster::AIRGAP_HOST_FILE;
use idp_core::lock::{self, Lock, Pinned};
use idp_core::settings::Settings;
use idp_provision::{Engine, ProvisionError};
use std::path::{Path, PathBuf};

/// The bundle's file name in the idp-lab home, where `registry.bundle` is empty.
pub const DEFAULT_BUNDLE: &str = "bundle.tar";

/// The bundle a lab's registry serves: `registry.bundle`, else [`DEFAULT_BUNDLE`] in the
/// idp-lab home.
pub fn bundle_path(settings: &Settings) -> Result<PathBuf, Failure> {
    match &settings.registry.bundle {
        Some(path) => Ok(path.clone()),
        None => Ok(crate::context::home()?.join(DEFAULT_BUNDLE)),
    }
}

/// The platform of this machine's Docker engine, as bundles name platforms.
pub fn engine_platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux/arm64",
        _ => "linux/amd64",
    }
}

/// A bundle that holds what an offline `up` needs.
#[derive(Debug)]
pub struct Offline {
    /// The bundle file.
    pub bundle: PathBuf,
    /// The node image.
    pub node: Pinned,
    /// k3s' air-gap images.
    pub airgap: Vec<Pinned>,
}

/// Checks, before anything is made, that the bundle exists and holds the node image and
/// the air-gap images the lock pins for this configuration and, unless `no_platform`, the
/// platform's charts and upstream files; the error names every missing artifact and the
/// command that makes the bundle.
pub fn check(ctx: &Context, settings: &Settings, no_platform: bool) -> Result<Offline, Failure> {
    let bundle = bundle_path(settings)?;
    let lock = Lock::embedded().map_err(|e| Failure::new(crate::exit::INTERNAL, format!("the embedded lock: {e}")))?;
    let needed = lock.cluster_images(&ctx.config);
    let make = make_command(&ctx.config.lab.profile, &bundle, &needed);
    if !bundle.is_file() {
        let list: Vec<String> = needed.iter().map(|p| format!("  {} ({})", p.reference, p.owner)).collect();
        return Err(Failure::new(
            PREFLIGHT,
            format!(
                "registry.offline is set, but there is no bundle at {}; nothing was created\n  make one on a connected machine: {make}\n  or set registry.bundle to the bundle's path",
                bundle.display()
            ),
        )
        .with_details(format!("The lab needs at least:\n{}", list.join("\n"))));
    }
    let inspection = idp_bundle::inspect(&bundle).map_err(|e| {
        Failure::new(PREFLIGHT, format!("the bundle {} cannot be read: {}", bundle.display(), idp_bundle::bundle::chain(&e)))
    })?;
    let bundled: Vec<(String, String)> =
        inspection.artifacts.iter().filter(|a| a.kind == idp_bundle::Kind::Image).map(|a| (a.name.clone(), a.digest.to_string())).collect();
    let absent = lock::absent_from(&needed, &bundled);
    if !absent.is_empty() {
        let list: Vec<String> = absent.iter().map(|a| format!("  {a}")).collect();
        return Err(Failure::new(
            PREFLIGHT,
            format!(
                "the bundle {} lacks {} image(s) this lab needs offline; nothing was created\n  make it again on a connected machine: {make}",
                bundle.display(),
                absent.len()
            ),
        )
        .with_details(list.join("\n")));
    }
    // The platform's charts and upstream files come from the bundle too (pushed to the
    // lab registry, read for the CRD phase): refused now, not after the cluster exists.
    if !no_platform {
        let entries = lock.for_profile(&ctx.config, &ctx.catalogue);
        let items = idp_bundle::create::items_from_lock(&entries)
            .map_err(|e| Failure::new(crate::exit::INTERNAL, format!("the embedded lock: {}", idp_bundle::bundle::chain(&e))))?;
        let held: std::collections::BTreeSet<&str> =
            inspection.artifacts.iter().filter(|a| a.kind != idp_bundle::Kind::Image).map(|a| a.name.as_str()).collect();
        let lacking: Vec<String> = items
            .iter()
            .filter(|i| i.kind != idp_bundle::Kind::Image && !held.contains(i.ref_name.as_str()))
            .map(|i| format!("  {} ({})", i.ref_name, i.kind.as_str()))
            .collect();
        if !lacking.is_empty() {
            return Err(Failure::new(
                PREFLIGHT,
                format!(
                    "the bundle {} lacks {} chart(s) or file(s) the platform needs offline; nothing was created\n  make it again on a connected machine: {make}",
                    bundle.display(),
                    lacking.len()
                ),
            )
            .with_details(lacking.join("\n")));
        }
    }
    let mut needed = needed.into_iter();
    let node = needed.next().ok_or_else(|| Failure::new(crate::exit::INTERNAL, "no node image for this cluster flavor"))?;
    Ok(Offline { bundle, node, airgap: needed.collect() })
}

/// The `bundle create` command that makes a bundle with `needed`.
fn make_command(profile: &str, bundle: &Path, needed: &[Pinned]) -> String {
    let mut command = format!("`idp-lab bundle create --profile {profile} --platform {}", engine_platform());
    // A node image outside the lock is added by name.
    for image in needed.iter().filter(|p| p.owner.ends_with(" node") && p.digest.is_none()) {
        command.push_str(&format!(" --image {}", image.reference));
    }
    command.push_str(&format!(" --out {}`", bundle.display()));
    command
}

/// Loads the node image from the bundle when Docker lacks it; returns whether it did.
pub async fn ensure_node_image(engine: &Engine, offline: &Offline, image: &str) -> Result<bool, Failure> {
    match engine.ensure_image(image, true).await {
        Ok(()) => return Ok(false),
        Err(ProvisionError::ImageMissing { .. }) => {}
        Err(e) => return Err(crate::lab::provision_failure(e)),
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let bundle = offline.bundle.clone();
    let images = vec![offline.node.reference.clone()];
    // The archive is made while Docker reads it: a bounded channel keeps memory flat.
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter { sender: sender.clone() });
        let result = idp_bundle::docker_archive(&bundle, &images, engine_platform(), &mut out).and_then(|summary| {
            std::io::Write::flush(&mut out)
                .map(|()| summary)
                .map_err(|e| idp_bundle::BundleError::from(idp_bundle::ArchiveError::Write { source: e }))
        });
        if let Err(e) = &result {
            // Docker must not load a partial archive: the stream ends in an error.
            let _ = sender.blocking_send(Err(std::io::Error::other(idp_bundle::bundle::chain(e))));
        }
        result
    });
    let stream = futures::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|chunk| (chunk, r)) });
    let loaded = engine.load_image(stream).await;
    let written = writer.await.map_err(|e| Failure::new(crate::exit::INTERNAL, format!("the archive writer: {e}")))?;
    // Docker refusing the archive stops the writer too: then Docker's words are the news.
    let docker_stopped_reading = |e: &idp_bundle::BundleError| matches!(e, idp_bundle::BundleError::DockerArchive(a) if matches!(**a, idp_bundle::ArchiveError::Write { .. }));
    match (written, loaded) {
        (Ok(_), Ok(_)) => {}
        (Err(e), Err(refused)) if docker_stopped_reading(&e) => return Err(crate::lab::provision_failure(refused)),
        (Err(e), _) => {
            return Err(Failure::new(
                PREFLIGHT,
                format!("the node image {image} in {}: {}", offline.bundle.display(), idp_bundle::bundle::chain(&e)),
            ));
        }
        (Ok(_), Err(refused)) => return Err(crate::lab::provision_failure(refused)),
    }
    // What was loaded is the image the nodes name.
    engine
        .ensure_image(image, true)
        .await
        .map_err(|e| Failure::new(DOCKER, format!("{image} was loaded from the bundle, but Docker does not show it: {e}")))?;
    Ok(true)
}

/// Writes k3s' air-gap images from the bundle into the lab's state directory
/// ([`AIRGAP_HOST_FILE`]), when it is missing or older than the bundle; returns its path
/// and whether it was written.
pub fn write_airgap(offline: &Offline, lab_dir: &Path) -> Result<(PathBuf, bool), Failure> {
    let path = lab_dir.join(AIRGAP_HOST_FILE);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(archive), Some(bundle)) = (modified(&path), modified(&offline.bundle))
        && archive >= bundle
    {
        return Ok((path, false));
    }
    let images: Vec<String> = offline.airgap.iter().map(|p| p.reference.clone()).collect();
    let partial = lab_dir.join(format!("{AIRGAP_HOST_FILE}.partial"));
    let io = |what: &str, p: &Path, e: std::io::Error| Failure::new(IO, format!("{what} {}: {e}", p.display()));
    let file = std::fs::File::create(&partial).map_err(|e| io("create", &partial, e))?;
    let mut out = std::io::BufWriter::new(file);
    if let Err(e) = idp_bundle::docker_archive(&offline.bundle, &images, engine_platform(), &mut out) {
        let _ = std::fs::remove_file(&partial);
        return Err(Failure::new(
            PREFLIGHT,
            format!("the air-gap images in {}: {}", offline.bundle.display(), idp_bundle::bundle::chain(&e)),
        ));
    }
    let file = out.into_inner().map_err(|e| io("write", &partial, e.into_error()))?;
    file.sync_all().map_err(|e| io("write", &partial, e))?;
    std::fs::rename(&partial, &path).map_err(|e| io("rename", &partial, e))?;
    Ok((path, true))
}

/// A `Write` into a bounded channel of chunks, from a blocking thread.
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sender
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "Docker stopped reading the archive"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
