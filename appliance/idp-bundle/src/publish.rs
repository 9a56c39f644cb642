//! Publishing to the lab registry: what Argo CD's Applications read as `oci://` sources
//! (`idp_core::delivery`), pushed by `up`, offline and online alike.
//!
//! - [`publish_stack`]: a component's manifests as a **stack artifact** at
//!   `local/stacks/<component>:sha-<16 hex>`: an OCI image manifest whose config is the
//!   empty descriptor (`application/vnd.oci.empty.v1+json`, `{}`) and whose one layer
//!   ([`STACK_LAYER_MEDIA_TYPE`]) is a deterministic gzipped tar of one file,
//!   [`STACK_FILE`] ([`stack_layer`]). The same manifests give the same bytes, so the
//!   same digests, wherever and whenever they are published.
//! - [`publish_chart`]: a chart package as the OCI Helm chart `helm push` makes of it
//!   ([`crate::chart`]) at `local/charts/<chart>:<version, + as _>`.
//! - [`copy_chart_into_local`]: offline, the chart the lab registry mirrors from the
//!   bundle, copied unchanged (manifest, config and package byte for byte) into
//!   `local/charts/`; a bundle stores charts of HTTP repositories exactly as
//!   [`publish_chart`] pushes them, so an offline lab and an online one publish one chart
//!   under one manifest digest.
//! - [`publish_chart_from_repository`]: online, a lock entry's chart: from its Helm
//!   repository, verified against the lock's digest, then [`publish_chart`]; or from its
//!   OCI registry by the lock's manifest digest, copied unchanged.
//!
//! Every blob is asked for first (`HEAD /v2/<repository>/blobs/<digest>`) and uploaded
//! only when the registry lacks it (`POST .../blobs/uploads/`, then `PUT <Location>
//! ?digest=`); the manifest is `PUT` by tag unless the tag already names it. Publishing
//! the same artifact again therefore sends nothing but `HEAD`s, and
//! [`Published::sent`] says so.
//!
//! The registry is named by its URL (`http://host:port`). Plain HTTP is used for that
//! host whatever it is (the lab registry listens on the lab network's gateway, which is
//! not loopback), and for no other.
//!
//! Argo CD's repo server (`util/oci/client.go`, `nativeOCIClient.Extract`) does not look
//! at an artifact's config media type: it requires exactly one content layer (a media
//! type ending in `tar` or `tar+gzip`) whose media type is in `--oci-layer-media-types`,
//! by default `application/vnd.oci.image.layer.v1.tar`, the same `+gzip` and
//! `application/vnd.cncf.helm.chart.content.v1.tar+gzip`
//! (`cmd/argocd-repo-server/commands/argocd_repo_server.go`). A stack artifact's layer is
//! the second; the empty config is what OCI 1.1 and ORAS use for artifacts.

use crate::bundle::{BundleError, TITLE_ANNOTATION};
use crate::chart::{MAX_UNPACKED, chart_artifact};
use crate::client::{Client, MANIFEST_ACCEPT, MANIFEST_LIMIT};
use crate::error::ClientError;
use crate::http::{Http, Response, authority, invalid, join_url};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use idp_core::delivery::{STACK_FILE, STACK_LAYER_MEDIA_TYPE, StackArtifact, chart_repository, chart_tag};
use idp_core::lock::ChartLock;
use idp_core::oci::{Descriptor, Digest, HELM_CHART_CONTENT, HELM_CONFIG, ImageManifest, ImageName, OCI_EMPTY, OCI_MANIFEST, Reference};
use std::collections::BTreeMap;
use std::io::Write as _;

/// The artifact type of a stack artifact (OCI 1.1: an artifact with the empty config
/// names its type here).
pub const STACK_ARTIFACT_TYPE: &str = "application/vnd.idp-lab.stack.v1";
/// The title of a stack artifact's layer: a tarball (ORAS writes the layer under this name).
pub const STACK_LAYER_TITLE: &str = "manifests.tar.gz";
/// The empty config blob.
const EMPTY_CONFIG: &[u8] = b"{}";

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// `<registry host:port>/<repository>:<tag>`: the source Argo CD names
    /// `oci://<registry>/<repository>` at revision `<tag>`.
    pub reference: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// Whether anything was sent: `false` when the registry had every blob and the tag
    /// already named this manifest (only `HEAD` requests were made).
    pub sent: bool,
    /// How many blobs were uploaded.
    pub blobs_sent: usize,
}

/// The layer of a stack artifact: a tar of one regular file, [`STACK_FILE`], holding
/// `manifests` (mode 0644, mtime 0, uid and gid 0, no user or group names, ustar), gzipped
/// with a header that has no mtime and no file name. The same manifests give the same
/// bytes.
pub fn stack_layer(manifests: &str) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(manifests.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_data(&mut header, STACK_FILE, manifests.as_bytes())?;
    let tar = tar.into_inner()?;
    // GzBuilder writes mtime 0 and no name unless told otherwise.
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar)?;
    gz.finish()
}

/// The manifest of a stack artifact over its `layer`.
fn stack_manifest(artifact: &StackArtifact, layer: &[u8]) -> Vec<u8> {
    let mut layer = Descriptor::new(STACK_LAYER_MEDIA_TYPE, Digest::of(layer), layer.len() as u64);
    layer.annotations = Some(BTreeMap::from([(TITLE_ANNOTATION.to_owned(), STACK_LAYER_TITLE.to_owned())]));
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: Some(STACK_ARTIFACT_TYPE.into()),
        config: Descriptor::new(OCI_EMPTY, Digest::of(EMPTY_CONFIG), EMPTY_CONFIG.len() as u64),
        layers: vec![layer],
        subject: None,
        annotations: Some(BTreeMap::from([(TITLE_ANNOTATION.to_owned(), artifact.component.clone())])),
    };
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// Publishes `artifact` to `registry` (`http://host:port`) as
/// `<registry>/<artifact.repository>:<artifact.tag>`.
pub async fn publish_stack(registry: &str, artifact: &StackArtifact) -> Result<Published, BundleError> {
    let layer = stack_layer(&artifact.manifests).map_err(BundleError::io("pack", std::path::Path::new(STACK_FILE)))?;
    let manifest = stack_manifest(artifact, &layer);
    let blobs = vec![Bytes::from_static(EMPTY_CONFIG), Bytes::from(layer)];
    publish(registry, &artifact.repository, &artifact.tag, OCI_MANIFEST, Bytes::from(manifest), blobs).await
}

/// Publishes the chart package `package` (a `.tgz`) of `chart` `version` to `registry`
/// (`http://host:port`) as `local/charts/<chart>:<version, + as _>`, exactly as
/// `helm push` makes it ([`crate::chart`]). A package that is not gzip-compressed, lacks
/// `<chart>/Chart.yaml` or names another chart or version is refused
/// ([`BundleError::Package`]) before anything is sent.
pub async fn publish_chart(registry: &str, chart: &str, version: &str, package: Bytes) -> Result<Published, BundleError> {
    let (name, ver, bytes) = (chart.to_owned(), version.to_owned(), package.clone());
    let artifact = tokio::task::spawn_blocking(move || {
        let (digest, size) = (Digest::of(&bytes), bytes.len() as u64);
        chart_artifact(&name, &ver, bytes.as_ref(), digest, size)
    })
    .await
    .map_err(|e| BundleError::io("read", std::path::Path::new(chart))(std::io::Error::other(e)))??;
    let blobs = vec![Bytes::from(artifact.config), package];
    publish(registry, &chart_repository(chart), &chart_tag(version), OCI_MANIFEST, Bytes::from(artifact.manifest), blobs).await
}

/// Offline: copies the chart the lab registry `registry` (`http://host:port`) mirrors
/// from the bundle as `from_ref` (its name in the bundle, e.g.
/// `charts.jetstack.io/cert-manager:v1.19.0`; [`crate::create::chart_ref_name`]) to
/// `local/charts/<chart>:<version, + as _>`, unchanged: its manifest, Helm config and
/// package are read (`?ns=<from_ref's registry>`, each blob checked against its digest)
/// and pushed again byte for byte. (idp-registry mounts no blob from its mirror into
/// `local/`, so they are uploaded; charts are small.) Refused when `from_ref` is not a
/// Helm chart of that name and version ([`BundleError::NotAChart`]).
pub async fn copy_chart_into_local(registry: &str, from_ref: &str, chart: &str, version: &str) -> Result<Published, BundleError> {
    let name = ImageName::parse(from_ref).map_err(|source| BundleError::Invalid {
        artifact: from_ref.to_owned(),
        what: "chart reference",
        source,
    })?;
    let lab = Target::open(registry).map_err(|e| publish_error(registry, &chart_repository(chart), &chart_tag(version), e))?;
    let source = Source::Lab { target: &lab, name: &name };
    copy_chart(registry, &source, from_ref, chart, version).await
}

/// Online: publishes the chart of a lock entry to `registry` (`http://host:port`) as
/// `local/charts/<name>:<version, + as _>`. A chart of a Helm HTTP repository is found in
/// its `index.yaml`, downloaded and checked against the lock's digest (and the index's),
/// then published as [`publish_chart`] does; a chart of an OCI registry is pulled by the
/// lock's manifest digest and copied unchanged. An entry without a digest is refused
/// ([`BundleError::Unverified`]): what the lab installs is what the lock pins.
pub async fn publish_chart_from_repository(client: &Client, registry: &str, chart: &ChartLock) -> Result<Published, BundleError> {
    let ref_name = crate::create::chart_ref_name(&chart.repository, &chart.name, &chart.version)?;
    let Some(digest) = chart.digest.as_deref() else {
        return Err(BundleError::Unverified { entries: vec![ref_name] });
    };
    let fetch = |source| BundleError::Fetch { artifact: ref_name.clone(), source: Box::new(source) };
    if chart.is_oci() {
        let mut name = ImageName::parse(&ref_name).map_err(|source| BundleError::Invalid {
            artifact: ref_name.clone(),
            what: "chart reference",
            source,
        })?;
        name.digest = Some(crate::bundle::digest(&ref_name, digest)?);
        let source = Source::Upstream { client, name: &name };
        return copy_chart(registry, &source, &ref_name, &chart.name, &chart.version).await;
    }
    let found = client.find_chart(&chart.repository, &chart.name, &chart.version).await.map_err(fetch)?;
    let mut package = Vec::new();
    client.download_chart(&found, Some(digest), &mut package).await.map_err(fetch)?;
    publish_chart(registry, &chart.name, &chart.version, Bytes::from(package)).await
}

/// Where a chart artifact is copied from.
enum Source<'a> {
    /// The lab registry's mirror of the bundle (`?ns=<name.registry>`).
    Lab { target: &'a Target, name: &'a ImageName },
    /// The chart's own registry, through the pull client (tokens, mirrors).
    Upstream { client: &'a Client, name: &'a ImageName },
}

impl Source<'_> {
    fn name(&self) -> &ImageName {
        match self {
            Source::Lab { name, .. } | Source::Upstream { name, .. } => name,
        }
    }

    /// The manifest the name points at: (media type, bytes), checked against the
    /// name's digest when it has one.
    async fn manifest(&self) -> Result<(String, Bytes), ClientError> {
        let name = self.name();
        let reference = match (&name.digest, &name.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        };
        let (media_type, bytes, url) = match self {
            Source::Lab { target, name } => {
                let url = format!("{}?ns={}", target.url(&name.repository, &format!("manifests/{reference}")), name.registry);
                let (media_type, bytes) = target.get_manifest(&url).await?;
                (media_type, bytes, url)
            }
            Source::Upstream { client, name } => {
                let m = client.manifest(&name.to_string()).await?;
                (m.media_type, Bytes::from(m.bytes), name.to_string())
            }
        };
        if let Some(expected) = &name.digest
            && Digest::of(&bytes) != *expected
        {
            return Err(ClientError::DigestMismatch {
                what: "manifest",
                url,
                expected: expected.to_string(),
                actual: Digest::of(&bytes).to_string(),
            });
        }
        Ok((media_type, bytes))
    }

    /// A blob of the artifact, checked against its descriptor.
    async fn blob(&self, desc: &Descriptor) -> Result<Bytes, ClientError> {
        let name = self.name();
        let url = format!("{}/{}/blobs/{}", name.registry, name.repository, desc.digest);
        if desc.size > MAX_UNPACKED {
            return Err(ClientError::TooLarge { url, limit: MAX_UNPACKED });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(desc.size).unwrap_or(0));
        let fetched = match self {
            Source::Lab { target, name } => {
                let url = format!("{}?ns={}", target.url(&name.repository, &format!("blobs/{}", desc.digest)), name.registry);
                let response = target.send(Method::GET, &url, &HeaderMap::new(), Bytes::new()).await?;
                if response.status != StatusCode::OK {
                    return Err(Http::status_error(response).await);
                }
                Http::stream_verified(response, "blob", Some(&desc.digest.to_string()), &mut bytes).await?
            }
            Source::Upstream { client, name } => {
                let reference = ImageName { tag: None, digest: Some(desc.digest.clone()), ..(*name).clone() };
                client.blob(&reference.to_string(), &desc.digest.to_string(), &mut bytes).await?
            }
        };
        if fetched.size != desc.size {
            return Err(ClientError::Protocol {
                url,
                reason: format!("the blob has {} bytes, its descriptor says {}", fetched.size, desc.size),
            });
        }
        Ok(Bytes::from(bytes))
    }
}

/// Copies a Helm chart artifact from `source` to `local/charts/<chart>:<tag>` of `registry`.
async fn copy_chart(registry: &str, source: &Source<'_>, artifact: &str, chart: &str, version: &str) -> Result<Published, BundleError> {
    let fetch = |source| BundleError::Fetch { artifact: artifact.to_owned(), source: Box::new(source) };
    let not_a_chart = |reason: String| BundleError::NotAChart { artifact: artifact.to_owned(), reason };
    let (media_type, bytes) = source.manifest().await.map_err(fetch)?;
    if media_type != OCI_MANIFEST {
        return Err(not_a_chart(format!("its manifest is a {media_type}")));
    }
    let manifest: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| not_a_chart(format!("its manifest does not parse as an OCI manifest ({e})")))?;
    if manifest.config.media_type != HELM_CONFIG {
        return Err(not_a_chart(format!("its config is {} (a chart's is {HELM_CONFIG})", manifest.config.media_type)));
    }
    if !manifest.layers.iter().any(|l| l.media_type == HELM_CHART_CONTENT) {
        return Err(not_a_chart(format!("it has no {HELM_CHART_CONTENT} layer")));
    }
    let config = source.blob(&manifest.config).await.map_err(fetch)?;
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        name: String,
        #[serde(default)]
        version: String,
    }
    let meta: Meta = serde_json::from_slice(&config).map_err(|e| not_a_chart(format!("its Helm config does not parse ({e})")))?;
    if meta.name != chart || meta.version.trim_start_matches('v') != version.trim_start_matches('v') {
        return Err(not_a_chart(format!("it is chart {:?} version {:?}, not {chart} {version}", meta.name, meta.version)));
    }
    let mut blobs = vec![config];
    for layer in &manifest.layers {
        blobs.push(source.blob(layer).await.map_err(fetch)?);
    }
    publish(registry, &chart_repository(chart), &chart_tag(version), &media_type, bytes, blobs).await
}

fn publish_error(registry: &str, repository: &str, tag: &str, source: ClientError) -> BundleError {
    BundleError::Publish { registry: registry.to_owned(), repository: repository.to_owned(), tag: tag.to_owned(), source: Box::new(source) }
}

/// Pushes `blobs` (each unless present) and then `manifest` by `tag`, unless the tag
/// already names it and no blob was missing.
async fn publish(
    registry: &str,
    repository: &str,
    tag: &str,
    media_type: &str,
    manifest: Bytes,
    blobs: Vec<Bytes>,
) -> Result<Published, BundleError> {
    let failed = |e| publish_error(registry, repository, tag, e);
    let target = Target::open(registry).map_err(failed)?;
    let reference = format!("{}/{repository}:{tag}", target.authority);
    idp_core::oci::validate_repository(repository).and_then(|()| Reference::parse(tag)).map_err(|source| BundleError::Invalid {
        artifact: reference.clone(),
        what: "reference",
        source,
    })?;
    let digest = Digest::of(&manifest);
    let already = target.tagged(repository, tag).await.map_err(failed)?;
    let mut blobs_sent = 0;
    let mut seen = Vec::new();
    for blob in blobs {
        let d = Digest::of(&blob);
        if seen.contains(&d) {
            continue;
        }
        seen.push(d.clone());
        if !target.has_blob(repository, &d).await.map_err(failed)? {
            target.upload(repository, &d, blob).await.map_err(failed)?;
            blobs_sent += 1;
        }
    }
    if blobs_sent == 0 && already.as_deref() == Some(digest.to_string().as_str()) {
        tracing::debug!(%reference, %digest, "already published");
        return Ok(Published { reference, digest, sent: false, blobs_sent });
    }
    target.put_manifest(repository, tag, media_type, manifest, &digest).await.map_err(failed)?;
    tracing::debug!(%reference, %digest, blobs_sent, "published");
    Ok(Published { reference, digest, sent: true, blobs_sent })
}

/// A registry named by its URL.
struct Target {
    /// `http://host:port`, no trailing slash.
    base: String,
    /// `host:port`, lower-cased.
    authority: String,
    http: Http,
}

impl Target {
    fn open(registry: &str) -> Result<Target, ClientError> {
        let base = registry.trim_end_matches('/');
        let uri: Uri = base.parse().map_err(|e: http::uri::InvalidUri| invalid("registry URL", registry, e.to_string()))?;
        let authority = uri.authority().map(|a| a.as_str().to_ascii_lowercase()).unwrap_or_default();
        if !matches!(uri.scheme_str(), Some("http" | "https")) || authority.is_empty() {
            return Err(invalid("registry URL", registry, "expected http://host:port or https://host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("registry URL", registry, "a registry URL has no path"));
        }
        Ok(Target { base: base.to_owned(), authority, http: Http::new()? })
    }

    fn url(&self, repository: &str, rest: &str) -> String {
        format!("{}/v2/{repository}/{rest}", self.base)
    }

    /// One request; plain HTTP only to this registry's own host.
    async fn send(&self, method: Method, url: &str, headers: &HeaderMap, body: Bytes) -> Result<Response, ClientError> {
        let plain = authority(url) == self.authority;
        self.http.send_body(method, url, headers, body, plain).await
    }

    /// The digest `tag` names, if the registry has it.
    async fn tagged(&self, repository: &str, tag: &str) -> Result<Option<String>, ClientError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let response = self.send(Method::HEAD, &self.url(repository, &format!("manifests/{tag}")), &headers, Bytes::new()).await?;
        match response.status {
            StatusCode::OK => Ok(response.header("docker-content-digest").map(str::to_owned)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Http::status_error(response).await),
        }
    }

    async fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool, ClientError> {
        let response = self.send(Method::HEAD, &self.url(repository, &format!("blobs/{digest}")), &HeaderMap::new(), Bytes::new()).await?;
        match response.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Http::status_error(response).await),
        }
    }

    /// A monolithic upload in two steps, as every registry takes it: `POST` for an
    /// upload URL, then `PUT` of the whole blob with its digest.
    async fn upload(&self, repository: &str, digest: &Digest, blob: Bytes) -> Result<(), ClientError> {
        let start = self.url(repository, "blobs/uploads/");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self.send(Method::POST, &start, &headers, Bytes::new()).await?;
        if response.status != StatusCode::ACCEPTED {
            return Err(Http::status_error(response).await);
        }
        let location = response
            .header("location")
            .ok_or_else(|| ClientError::Protocol { url: start.clone(), reason: "202 without a Location".into() })?;
        let location = join_url(&start, location)?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        let response = self.send(Method::PUT, &url, &headers, blob).await?;
        if response.status != StatusCode::CREATED {
            return Err(Http::status_error(response).await);
        }
        check_digest(&response, digest)
    }

    async fn put_manifest(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        manifest: Bytes,
        digest: &Digest,
    ) -> Result<(), ClientError> {
        let url = self.url(repository, &format!("manifests/{tag}"));
        let mut headers = HeaderMap::new();
        headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_str(media_type).map_err(|e| invalid("media type", media_type, e.to_string()))?);
        let response = self.send(Method::PUT, &url, &headers, manifest).await?;
        if response.status != StatusCode::CREATED {
            return Err(Http::status_error(response).await);
        }
        check_digest(&response, digest)
    }

    /// `GET` of a manifest: its media type (`Content-Type`) and bytes.
    async fn get_manifest(&self, url: &str) -> Result<(String, Bytes), ClientError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let response = self.send(Method::GET, url, &headers, Bytes::new()).await?;
        if response.status != StatusCode::OK {
            return Err(Http::status_error(response).await);
        }
        let media_type = response.header("content-type").map(|t| t.split(';').next().unwrap_or(t).trim().to_owned()).unwrap_or_default();
        let bytes = Http::read_limited(response, MANIFEST_LIMIT).await?;
        Ok((media_type, Bytes::from(bytes)))
    }
}

/// A `Docker-Content-Digest` that differs from what was sent is an error.
fn check_digest(response: &Response, digest: &Digest) -> Result<(), ClientError> {
    match response.header("docker-content-digest") {
        Some(answered) if answered != digest.to_string() => Err(ClientError::DigestMismatch {
            what: "upload",
            url: response.url.clone(),
            expected: digest.to_string(),
            actual: answered.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn artifact(manifests: &str) -> StackArtifact {
        StackArtifact {
            component: "demo".into(),
            repository: "local/stacks/demo".into(),
            tag: "sha-0123456789abcdef".into(),
            manifests: manifests.into(),
        }
    }

    #[test]
    fn a_stack_layer_is_deterministic_and_holds_only_its_file() {
        let text = "---\nkind: ConfigMap\nmetadata:\n  name: a\n";
        let layer = stack_layer(text).expect("packs");
        assert_eq!(layer, stack_layer(text).expect("again"), "same manifests, same bytes");
        assert_ne!(layer, stack_layer("---\nkind: Secret\n").expect("other"));
        // gzip: magic, deflate, no flags (no name), mtime 0.
        assert_eq!(&layer[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
        let mut entries = archive.entries().expect("a tar");
        let mut entry = entries.next().expect("one entry").expect("readable");
        let h = entry.header().clone();
        assert_eq!(entry.path().expect("path").to_str(), Some(STACK_FILE));
        assert_eq!((h.mode().ok(), h.mtime().ok(), h.uid().ok(), h.gid().ok()), (Some(0o644), Some(0), Some(0), Some(0)));
        assert_eq!(h.username().ok().flatten().unwrap_or_default(), "");
        assert_eq!(h.groupname().ok().flatten().unwrap_or_default(), "");
        assert!(h.entry_type().is_file());
        let mut content = String::new();
        entry.read_to_string(&mut content).expect("utf-8");
        assert_eq!(content, text);
        drop(entry);
        assert!(entries.next().is_none(), "only manifests.yaml");
    }

    #[test]
    fn a_stack_manifest_is_an_oci_artifact_over_the_empty_config() {
        let a = artifact("---\nkind: ConfigMap\n");
        let layer = stack_layer(&a.manifests).expect("packs");
        let manifest: ImageManifest = serde_json::from_slice(&stack_manifest(&a, &layer)).expect("parses");
        assert_eq!(manifest.media_type.as_deref(), Some(OCI_MANIFEST));
        assert_eq!(manifest.artifact_type.as_deref(), Some(STACK_ARTIFACT_TYPE));
        assert_eq!(manifest.config, Descriptor::new(OCI_EMPTY, Digest::of(b"{}"), 2));
        assert_eq!(manifest.config.digest.to_string(), idp_core::oci::OCI_EMPTY_DIGEST);
        assert_eq!(manifest.layers.len(), 1);
        assert_eq!(manifest.layers[0].media_type, STACK_LAYER_MEDIA_TYPE);
        assert_eq!(manifest.layers[0].digest, Digest::of(&layer));
        assert_eq!(manifest.layers[0].annotation(TITLE_ANNOTATION), Some(STACK_LAYER_TITLE));
    }

    #[test]
    fn registries_are_named_by_an_http_url_without_a_path() {
        assert_eq!(Target::open("http://172.30.0.1:5000/").expect("gateway").authority, "172.30.0.1:5000");
        assert_eq!(Target::open("https://Registry.Example").expect("https").base, "https://Registry.Example");
        for bad in ["172.30.0.1:5000", "ftp://x:1", "http://x:1/v2", "http://", "http://x?y=1"] {
            assert!(matches!(Target::open(bad), Err(ClientError::Invalid { .. })), "{bad}");
        }
    }
}
