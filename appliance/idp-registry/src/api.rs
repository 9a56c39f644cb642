//! The distribution API v2 endpoints, over [`Registry`].

use std::fmt::Display;
use std::io;
use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Bytes;
use idp_core::oci::{self, DOCKER_HUB, Descriptor, Digest, ImageIndex, ImageManifest, OciError, Reference, canonical_registry};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::archive::BlobSource;
use crate::body::Body;
use crate::layout::Repo;
use crate::local::{Upload, sniff_media_type};
use crate::route::{self, ByteRange, Route, RouteError, query_param};
use crate::{API_VERSION, API_VERSION_HEADER, Access, LOCAL_PREFIX, MAX_MANIFEST_SIZE, Registry};

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const JSON: &str = "application/json; charset=utf-8";
const OCTET_STREAM: &str = "application/octet-stream";

/// Answers one request of the distribution API v2 with [`Access::Full`].
///
/// Never fails: every problem is an error response with the distribution error body
/// (`{"errors":[{"code":...,"message":...,"detail":...}]}`). Works on any request body
/// (hyper's `Incoming` on a socket, `Full<Bytes>` in tests); upload bodies are streamed
/// to disk as they arrive.
pub async fn handle<B>(registry: &Registry, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    handle_with(registry, Access::Full, request).await
}

/// Answers one request as [`handle`] does, with what `access` allows: with
/// [`Access::MirrorOnly`], every request but `GET` and `HEAD` is `403 DENIED` (its body
/// is not read) and `local/` names are unknown.
pub async fn handle_with<B>(registry: &Registry, access: Access, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = match dispatch(registry, access, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));
    tracing::debug!(target: "idp_registry::access", %method, path, status = response.status().as_u16(), "registry");
    response
}

/// An error response of the distribution API.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: Value,
    headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>, detail: Value) -> ApiError {
        ApiError { status, code, message: message.into(), detail, headers: Vec::new() }
    }

    fn with_header(mut self, name: HeaderName, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "UNSUPPORTED", "not an endpoint of the distribution API", Value::Null)
    }

    fn name_invalid(error: &OciError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", "invalid repository name", json!(error.to_string()))
    }

    fn digest_invalid(detail: impl Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
            json!(detail.to_string()),
        )
    }

    fn reference_invalid(error: &OciError) -> ApiError {
        match error {
            OciError::InvalidDigest { .. } => ApiError::digest_invalid(error),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", "invalid tag", json!(error.to_string())),
        }
    }

    fn name_unknown(name: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry", json!({ "name": name }))
    }

    fn manifest_unknown(name: &str, reference: &Reference) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            json!({ "name": name, "reference": reference.to_string() }),
        )
    }

    fn blob_unknown(digest: &Digest) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry", json!({ "digest": digest.to_string() }))
    }

    fn read_only(name: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("the mirror is read-only; push to {LOCAL_PREFIX}/<name>"),
            json!({ "name": name }),
        )
    }

    fn denied(method: &Method) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "DENIED",
            "requested access to the resource is denied",
            json!({ "method": method.as_str(), "reason": "this registry is a read-only mirror: only GET and HEAD are served" }),
        )
    }

    fn unsupported(what: &str) -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", format!("{what} is not supported"), Value::Null)
    }

    fn upload_unknown(id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", json!({ "id": id }))
    }

    fn upload_invalid(detail: impl Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", "blob upload invalid", json!(detail.to_string()))
    }

    fn manifest_invalid(detail: impl Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "manifest invalid", json!(detail.to_string()))
    }

    fn manifest_blob_unknown(digest: &Digest) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", json!({ "digest": digest.to_string() }))
    }

    fn internal(what: &str, error: impl Display) -> ApiError {
        tracing::error!(error = %error, "registry: failed to {what}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", format!("failed to {what}"), json!(error.to_string()))
    }

    fn into_response(self) -> Response<Body> {
        let body = json!({ "errors": [{ "code": self.code, "message": self.message, "detail": self.detail }] });
        let mut response = Response::new(Body::bytes(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// A response with `status`, the given headers and body.
fn respond(status: StatusCode, headers: &[(HeaderName, &str)], body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

fn json_response(value: &Value, extra: &[(HeaderName, &str)]) -> Response<Body> {
    let mut headers = vec![(header::CONTENT_TYPE, JSON)];
    headers.extend_from_slice(extra);
    respond(StatusCode::OK, &headers, Body::bytes(value.to_string()))
}

fn is_local(name: &str) -> bool {
    name.split('/').next() == Some(LOCAL_PREFIX)
}

/// The `(registry, repository)` of the mirror a request names; see the crate docs.
pub(crate) fn mirror_key(name: &str, ns: Option<&str>) -> (String, String) {
    let (registry, repository) = match ns {
        Some(ns) => (canonical_registry(ns), name.to_owned()),
        None => match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first == "localhost" => (canonical_registry(first), rest.to_owned()),
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        },
    };
    if registry == DOCKER_HUB && !repository.contains('/') {
        return (registry, format!("library/{repository}"));
    }
    (registry, repository)
}

async fn dispatch<B>(registry: &Registry, access: Access, request: Request<B>) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let (parts, body) = request.into_parts();
    let method = &parts.method;
    let head = method == Method::HEAD;
    let read = method == Method::GET || head;
    let mirror_only = access == Access::MirrorOnly;
    // Before anything else: no write form gets past here, whatever its path.
    if mirror_only && !read {
        return Err(ApiError::denied(method));
    }
    let route = match route::parse(parts.uri.path()) {
        Ok(route) => route,
        Err(RouteError::NotFound) => return Err(ApiError::not_found()),
        Err(RouteError::Name(e)) => return Err(ApiError::name_invalid(&e)),
    };
    let query = parts.uri.query();
    match route {
        Route::Uploads { .. } | Route::Upload { .. } if mirror_only => Err(ApiError::denied(method)),
        Route::Tags { name } | Route::Manifest { name, .. } | Route::Blob { name, .. } if mirror_only && is_local(name) => {
            Err(ApiError::name_unknown(name))
        }
        Route::Base if read => Ok(json_response(&json!({}), &[])),
        Route::Catalog if method == Method::GET => catalog(registry, access, query),
        Route::Tags { name } if method == Method::GET => tags_list(registry, name, query),
        Route::Base | Route::Catalog | Route::Tags { .. } => Err(ApiError::unsupported(&format!("{method} here"))),
        Route::Manifest { name, reference } => {
            let reference = Reference::parse(reference).map_err(|e| ApiError::reference_invalid(&e))?;
            match (read, is_local(name)) {
                (true, _) => get_manifest(registry, name, query, &reference, head).await,
                (false, false) => Err(ApiError::read_only(name)),
                (false, true) if method == Method::PUT => put_manifest(registry, name, &reference, &parts.headers, body).await,
                (false, true) => Err(ApiError::unsupported(&format!("{method} of a manifest"))),
            }
        }
        Route::Blob { name, digest } => {
            let digest = Digest::parse(digest).map_err(ApiError::digest_invalid)?;
            match (read, is_local(name)) {
                (true, _) => get_blob(registry, name, query, &digest, head, &parts.headers).await,
                (false, false) => Err(ApiError::read_only(name)),
                (false, true) => Err(ApiError::unsupported(&format!("{method} of a blob"))),
            }
        }
        Route::Uploads { name } => match (is_local(name), method == Method::POST) {
            (false, _) => Err(ApiError::read_only(name)),
            (true, true) => start_upload(registry, name, query, body).await,
            (true, false) => Err(ApiError::unsupported(&format!("{method} of uploads"))),
        },
        Route::Upload { name, id } => {
            if !is_local(name) {
                return Err(ApiError::read_only(name));
            }
            match *method {
                Method::GET => upload_status(registry, name, id).await,
                Method::PATCH => patch_upload(registry, name, id, &parts.headers, body).await,
                Method::PUT => finish_upload(registry, name, id, query, body).await,
                Method::DELETE => {
                    registry.local.upload(id).ok_or_else(|| ApiError::upload_unknown(id))?;
                    registry.local.end_upload(id).await;
                    Ok(respond(StatusCode::NO_CONTENT, &[], Body::empty()))
                }
                _ => Err(ApiError::unsupported(&format!("{method} of an upload"))),
            }
        }
    }
}

/// The repository of the mirror a request names.
fn mirror_repo<'r>(registry: &'r Registry, name: &str, query: Option<&str>) -> Result<&'r Repo, ApiError> {
    let ns = query_param(query, "ns");
    let (host, path) = mirror_key(name, ns.as_deref());
    registry.mirror.as_ref().and_then(|m| m.repo(&host, &path)).ok_or_else(|| ApiError::name_unknown(name))
}

/// `n` and `last` of a paginated list.
fn paginate(all: Vec<String>, query: Option<&str>, base: &str) -> Result<(Vec<String>, Option<String>), ApiError> {
    let n = match query_param(query, "n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", "invalid number of results requested", json!({ "n": n }))
        })?),
        None => None,
    };
    let last = query_param(query, "last");
    let rest: Vec<String> = all.into_iter().filter(|s| last.as_deref().is_none_or(|last| s.as_str() > last)).collect();
    let Some(n) = n else { return Ok((rest, None)) };
    let more = rest.len() > n;
    let page: Vec<String> = rest.into_iter().take(n).collect();
    let link = match page.last() {
        Some(last) if more => Some(format!("<{base}?last={last}&n={n}>; rel=\"next\"")),
        _ => None,
    };
    Ok((page, link))
}

fn catalog(registry: &Registry, access: Access, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let names = match access {
        Access::Full => registry.catalog(),
        Access::MirrorOnly => registry.mirror.as_ref().map(crate::layout::Mirror::catalog).unwrap_or_default(),
    };
    let (page, link) = paginate(names, query, "/v2/_catalog")?;
    let link: Vec<(HeaderName, &str)> = link.as_deref().map(|l| (header::LINK, l)).into_iter().collect();
    Ok(json_response(&json!({ "repositories": page }), &link))
}

fn tags_list(registry: &Registry, name: &str, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let tags = if is_local(name) {
        registry.local.tags(name).ok_or_else(|| ApiError::name_unknown(name))?
    } else {
        mirror_repo(registry, name, query)?.tags.keys().cloned().collect()
    };
    let (page, link) = paginate(tags, query, &format!("/v2/{name}/tags/list"))?;
    let link: Vec<(HeaderName, &str)> = link.as_deref().map(|l| (header::LINK, l)).into_iter().collect();
    Ok(json_response(&json!({ "name": name, "tags": page }), &link))
}

async fn get_manifest(
    registry: &Registry,
    name: &str,
    query: Option<&str>,
    reference: &Reference,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    let (media_type, digest, bytes) = if is_local(name) {
        let local = &registry.local;
        let digest = match reference {
            Reference::Tag(tag) => match local.tag(name, tag) {
                Ok(desc) => desc.digest,
                Err(true) => return Err(ApiError::manifest_unknown(name, reference)),
                Err(false) => return Err(ApiError::name_unknown(name)),
            },
            Reference::Digest(digest) => digest.clone(),
        };
        match local.manifest(&digest).await {
            Ok(Some((media_type, bytes))) => (media_type, digest, bytes),
            Ok(None) => return Err(ApiError::manifest_unknown(name, reference)),
            Err(e) => return Err(ApiError::internal("read a manifest", e)),
        }
    } else {
        let repo = mirror_repo(registry, name, query)?;
        let (media_type, digest) = match reference {
            Reference::Tag(tag) => repo.tags.get(tag).map(|d| (d.media_type.clone(), d.digest.clone())),
            Reference::Digest(digest) => {
                repo.blobs.get(digest).filter(|b| b.is_manifest()).map(|b| (b.media_type.clone(), b.digest.clone()))
            }
        }
        .ok_or_else(|| ApiError::manifest_unknown(name, reference))?;
        let bytes = registry
            .mirror
            .as_ref()
            .and_then(|m| m.manifest(&digest))
            .cloned()
            .ok_or_else(|| ApiError::manifest_unknown(name, reference))?;
        (media_type, digest, bytes)
    };
    let digest = digest.to_string();
    let len = bytes.len().to_string();
    let etag = format!("\"{digest}\"");
    let headers = [
        (header::CONTENT_TYPE, media_type.as_str()),
        (DOCKER_CONTENT_DIGEST, digest.as_str()),
        (header::CONTENT_LENGTH, len.as_str()),
        (header::ETAG, etag.as_str()),
    ];
    Ok(respond(StatusCode::OK, &headers, if head { Body::empty() } else { Body::bytes(bytes) }))
}

async fn get_blob(
    registry: &Registry,
    name: &str,
    query: Option<&str>,
    digest: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let (source, size) = if is_local(name) {
        match registry.local.blob_size(digest).await {
            Ok(Some(size)) => (BlobSource::File(registry.local.blob_path(digest)), size),
            Ok(None) => return Err(ApiError::blob_unknown(digest)),
            Err(e) => return Err(ApiError::internal("stat a blob", e)),
        }
    } else {
        let repo = mirror_repo(registry, name, query)?;
        let blob = repo.blobs.get(digest).ok_or_else(|| ApiError::blob_unknown(digest))?;
        let source = registry.mirror.as_ref().and_then(|m| m.blob(digest)).ok_or_else(|| ApiError::blob_unknown(digest))?;
        (source, blob.size)
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    serve_blob(source, digest, size, head, range).await
}

async fn serve_blob(source: BlobSource, digest: &Digest, size: u64, head: bool, range: Option<&str>) -> Result<Response<Body>, ApiError> {
    let digest_text = digest.to_string();
    let etag = format!("\"{digest_text}\"");
    let mut headers = vec![
        (header::CONTENT_TYPE, OCTET_STREAM.to_owned()),
        (DOCKER_CONTENT_DIGEST, digest_text),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
        (header::ETAG, etag),
    ];
    let range = if head { ByteRange::Full } else { route::byte_range(range, size) };
    let (status, start, len) = match range {
        ByteRange::Full => (StatusCode::OK, 0, size),
        ByteRange::Partial { start, end } => {
            headers.push((header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        ByteRange::Unsatisfiable => {
            let error = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID", "invalid content range", json!({ "size": size }));
            return Err(error.with_header(header::CONTENT_RANGE, format!("bytes */{size}")));
        }
    };
    headers.push((header::CONTENT_LENGTH, len.to_string()));
    let borrowed: Vec<(HeaderName, &str)> = headers.iter().map(|(n, v)| (n.clone(), v.as_str())).collect();
    if head {
        return Ok(respond(status, &borrowed, Body::empty()));
    }
    let opened = tokio::task::spawn_blocking(move || match source {
        BlobSource::File(path) => {
            let file = std::fs::File::open(&path)?;
            let actual = file.metadata()?.len();
            if actual != size {
                return Err(io::Error::other(format!("{} has {actual} bytes, {size} expected", path.display())));
            }
            Ok((Arc::new(file), start))
        }
        BlobSource::InTar { file, path, offset } => {
            // The tar is held open since the registry opened it: a rename over it
            // changes nothing here, but one cut short in place would.
            let actual = file.metadata()?.len();
            if actual < offset + size {
                return Err(io::Error::other(format!("{} has {actual} bytes, the blob ends at byte {}", path.display(), offset + size)));
            }
            Ok((file, offset + start))
        }
    })
    .await
    .map_err(|e| ApiError::internal("open a blob", e))?;
    let (file, at) = match opened {
        Ok(pair) => pair,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ApiError::blob_unknown(digest)),
        Err(e) => return Err(ApiError::internal("open a blob", e)),
    };
    Ok(respond(status, &borrowed, Body::file_at(file, at, len)))
}

/// Why receiving a request body into a file stopped.
enum ReceiveError {
    /// The client's body failed (it went away, or broke the framing).
    Body(String),
    /// Writing the file failed.
    Io(io::Error),
}

impl ReceiveError {
    fn into_api(self) -> ApiError {
        match self {
            ReceiveError::Body(e) => ApiError::upload_invalid(format!("the request body failed: {e}")),
            ReceiveError::Io(e) => ApiError::internal("write an upload", e),
        }
    }
}

/// Appends `body` to `file`, hashing it; the number of bytes written.
async fn receive<B>(mut body: B, file: &mut tokio::fs::File, hasher: &mut Sha256) -> Result<u64, ReceiveError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let mut written = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReceiveError::Body(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        hasher.update(&data);
        file.write_all(&data).await.map_err(ReceiveError::Io)?;
        written += data.len() as u64;
    }
    file.flush().await.map_err(ReceiveError::Io)?;
    Ok(written)
}

fn upload_headers(name: &str, id: &str, size: u64) -> [(HeaderName, String); 4] {
    [
        (header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}")),
        (header::RANGE, format!("0-{}", size.saturating_sub(1))),
        (DOCKER_UPLOAD_UUID, id.to_owned()),
        (header::CONTENT_LENGTH, "0".to_owned()),
    ]
}

fn borrowed(headers: &[(HeaderName, String)]) -> Vec<(HeaderName, &str)> {
    headers.iter().map(|(n, v)| (n.clone(), v.as_str())).collect()
}

fn blob_created(name: &str, digest: &Digest) -> Response<Body> {
    let headers = [
        (header::LOCATION, format!("/v2/{name}/blobs/{digest}")),
        (DOCKER_CONTENT_DIGEST, digest.to_string()),
        (header::CONTENT_LENGTH, "0".to_owned()),
    ];
    respond(StatusCode::CREATED, &borrowed(&headers), Body::empty())
}

async fn start_upload<B>(registry: &Registry, name: &str, query: Option<&str>, body: B) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let local = &registry.local;
    if let Some(digest) = query_param(query, "digest") {
        // Monolithic: the whole blob in this request.
        let digest = Digest::parse(&digest).map_err(ApiError::digest_invalid)?;
        let temp = local.temp_path();
        let mut file = tokio::fs::File::create(&temp).await.map_err(|e| ApiError::internal("create an upload", e))?;
        let mut hasher = Sha256::new();
        let received = receive(body, &mut file, &mut hasher).await;
        drop(file);
        let result = match received {
            Ok(_) => {
                let actual = Digest::from_sha256(&hasher.finalize().into());
                if actual == digest {
                    local.commit_blob(&temp, &digest).await.map_err(|e| ApiError::internal("store a blob", e))
                } else {
                    Err(ApiError::digest_invalid(format!("the content hashes to {actual}")))
                }
            }
            Err(e) => Err(e.into_api()),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        return result.map(|()| blob_created(name, &digest));
    }
    if let Some(mount) = query_param(query, "mount") {
        let digest = Digest::parse(&mount).map_err(ApiError::digest_invalid)?;
        if local.blob_size(&digest).await.map_err(|e| ApiError::internal("stat a blob", e))?.is_some() {
            return Ok(blob_created(name, &digest));
        }
    }
    let id = local.start_upload(name).await.map_err(|e| ApiError::internal("start an upload", e))?;
    Ok(respond(StatusCode::ACCEPTED, &borrowed(&upload_headers(name, &id, 0)), Body::empty()))
}

/// The upload `id` of repository `name`, locked.
async fn locked_upload(registry: &Registry, name: &str, id: &str) -> Result<tokio::sync::OwnedMutexGuard<Upload>, ApiError> {
    let upload = registry.local.upload(id).ok_or_else(|| ApiError::upload_unknown(id))?;
    let guard = upload.lock_owned().await;
    if guard.repo != name {
        return Err(ApiError::upload_unknown(id));
    }
    Ok(guard)
}

async fn upload_status(registry: &Registry, name: &str, id: &str) -> Result<Response<Body>, ApiError> {
    let upload = locked_upload(registry, name, id).await?;
    Ok(respond(StatusCode::NO_CONTENT, &borrowed(&upload_headers(name, id, upload.size)), Body::empty()))
}

/// Appends `body` to the upload; on any failure the upload is as it was before.
async fn append<B>(upload: &mut Upload, body: B) -> Result<u64, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let (size_before, hasher_before) = (upload.size, upload.hasher.clone());
    let mut file =
        tokio::fs::OpenOptions::new().append(true).open(&upload.path).await.map_err(|e| ApiError::internal("open an upload", e))?;
    match receive(body, &mut file, &mut upload.hasher).await {
        Ok(written) => {
            upload.size += written;
            Ok(written)
        }
        Err(e) => {
            upload.hasher = hasher_before;
            if let Err(e) = file.set_len(size_before).await {
                tracing::warn!(error = %e, "registry: failed to roll an upload back");
            }
            Err(e.into_api())
        }
    }
}

async fn patch_upload<B>(registry: &Registry, name: &str, id: &str, headers: &HeaderMap, body: B) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let mut upload = locked_upload(registry, name, id).await?;
    let range = match headers.get(header::CONTENT_RANGE) {
        Some(value) => {
            let parsed = value.to_str().ok().and_then(route::content_range);
            let Some((start, end)) = parsed else {
                return Err(ApiError::upload_invalid("Content-Range is not <start>-<end>"));
            };
            if start != upload.size {
                let error = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "RANGE_INVALID",
                    "invalid content range",
                    json!(format!("the upload holds {} bytes; a chunk must start there, not at {start}", upload.size)),
                );
                let range = format!("0-{}", upload.size.saturating_sub(1));
                return Err(error
                    .with_header(header::RANGE, range)
                    .with_header(header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}")));
            }
            Some((start, end))
        }
        None => None,
    };
    let (size_before, hasher_before) = (upload.size, upload.hasher.clone());
    let written = append(&mut upload, body).await?;
    if let Some((start, end)) = range
        && written != end - start + 1
    {
        upload.size = size_before;
        upload.hasher = hasher_before;
        if let Ok(file) = tokio::fs::OpenOptions::new().write(true).open(&upload.path).await {
            let _ = file.set_len(size_before).await;
        }
        return Err(ApiError::upload_invalid(format!(
            "Content-Range {start}-{end} announced {} bytes, the body had {written}",
            end - start + 1
        )));
    }
    Ok(respond(StatusCode::ACCEPTED, &borrowed(&upload_headers(name, id, upload.size)), Body::empty()))
}

async fn finish_upload<B>(registry: &Registry, name: &str, id: &str, query: Option<&str>, body: B) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let Some(digest) = query_param(query, "digest") else {
        return Err(ApiError::digest_invalid("the digest query parameter is missing"));
    };
    let digest = Digest::parse(&digest).map_err(ApiError::digest_invalid)?;
    let mut upload = locked_upload(registry, name, id).await?;
    append(&mut upload, body).await?;
    let actual = Digest::from_sha256(&upload.hasher.clone().finalize().into());
    if actual != digest {
        drop(upload);
        registry.local.end_upload(id).await;
        return Err(ApiError::digest_invalid(format!("the upload hashes to {actual}")));
    }
    let path = upload.path.clone();
    drop(upload);
    let committed = registry.local.commit_blob(&path, &digest).await;
    registry.local.end_upload(id).await;
    committed.map_err(|e| ApiError::internal("store a blob", e))?;
    Ok(blob_created(name, &digest))
}

/// Reads a request body of at most `limit` bytes into memory.
async fn read_limited<B>(mut body: B, limit: u64) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::manifest_invalid(format!("the request body failed: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if (out.len() + data.len()) as u64 > limit {
            return Err(ApiError::manifest_invalid(format!("a manifest may have at most {limit} bytes")));
        }
        out.extend_from_slice(&data);
    }
    Ok(Bytes::from(out))
}

async fn put_manifest<B>(
    registry: &Registry,
    name: &str,
    reference: &Reference,
    headers: &HeaderMap,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let bytes = read_limited(body, MAX_MANIFEST_SIZE).await?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .filter(|t| oci::is_index(t) || oci::is_manifest(t));
    let Some(sniffed) = sniff_media_type(&bytes) else {
        return Err(ApiError::manifest_invalid("not a schema 2 image manifest or index"));
    };
    let explicit = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v.get("mediaType").and_then(Value::as_str).map(str::to_owned));
    let media_type = match (declared, explicit) {
        (Some(declared), Some(explicit)) if declared != explicit => {
            return Err(ApiError::manifest_invalid(format!("Content-Type {declared} but mediaType {explicit}")));
        }
        (Some(declared), _) => declared,
        (None, _) => sniffed,
    };
    let local = &registry.local;
    let mut artifact_type = None;
    if oci::is_index(&media_type) {
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(ApiError::manifest_invalid)?;
        for child in &index.manifests {
            if local.blob_size(&child.digest).await.map_err(|e| ApiError::internal("stat a manifest", e))? != Some(child.size) {
                return Err(ApiError::manifest_blob_unknown(&child.digest));
            }
        }
        artifact_type = index.artifact_type;
    } else {
        let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(ApiError::manifest_invalid)?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if is_foreign(blob) {
                continue;
            }
            match local.blob_size(&blob.digest).await.map_err(|e| ApiError::internal("stat a blob", e))? {
                None => return Err(ApiError::manifest_blob_unknown(&blob.digest)),
                Some(size) if size != blob.size => {
                    return Err(ApiError::manifest_invalid(format!(
                        "blob {} has {size} bytes, the manifest says {}",
                        blob.digest, blob.size
                    )));
                }
                Some(_) => {}
            }
        }
        artifact_type = artifact_type.or(manifest.artifact_type);
    }
    let digest = Digest::of(&bytes);
    let tag = match reference {
        Reference::Digest(expected) if *expected != digest => {
            return Err(ApiError::digest_invalid(format!("the manifest hashes to {digest}, not {expected}")));
        }
        Reference::Digest(_) => None,
        Reference::Tag(tag) => Some(tag.as_str()),
    };
    let mut desc = Descriptor::new(&media_type, digest.clone(), bytes.len() as u64);
    desc.artifact_type = artifact_type;
    local.put_manifest(name, tag, desc, bytes).await.map_err(|e| ApiError::internal("store a manifest", e))?;
    let headers = [
        (header::LOCATION, format!("/v2/{name}/manifests/{digest}")),
        (DOCKER_CONTENT_DIGEST, digest.to_string()),
        (header::CONTENT_LENGTH, "0".to_owned()),
    ];
    Ok(respond(StatusCode::CREATED, &borrowed(&headers), Body::empty()))
}

/// A layer that lives elsewhere (Windows base layers): never pushed, so not checked.
fn is_foreign(desc: &Descriptor) -> bool {
    desc.urls.as_ref().is_some_and(|u| !u.is_empty())
        && (desc.media_type.contains("foreign") || desc.media_type.contains("nondistributable"))
}

#[cfg(test)]
mod tests;
