//! Reading a request, without I/O: which endpoint a path names, query parameters, and
//! the `Range` and `Content-Range` headers.

use idp_core::oci::{OciError, validate_repository};

/// An endpoint of the distribution API, with the raw (validated) parts of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `/v2/`.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags { name: &'a str },
    /// `/v2/<name>/manifests/<reference>`; the reference is not parsed yet.
    Manifest { name: &'a str, reference: &'a str },
    /// `/v2/<name>/blobs/<digest>`; the digest is not parsed yet.
    Blob { name: &'a str, digest: &'a str },
    /// `/v2/<name>/blobs/uploads/`.
    Uploads { name: &'a str },
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload { name: &'a str, id: &'a str },
}

/// Why a path names no endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// Not a distribution API path at all.
    NotFound,
    /// An endpoint, but its repository name is invalid.
    Name(OciError),
}

/// The endpoint `path` (the raw request path, not percent-decoded) names. The name is
/// checked against the grammar here, so a name with `..`, `%2e` or an empty component
/// never leaves this function.
pub(crate) fn parse(path: &str) -> Result<Route<'_>, RouteError> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Err(RouteError::NotFound);
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Err(RouteError::NotFound);
    };
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let route = if let Some(name) = rest.strip_suffix("/tags/list") {
        Route::Tags { name }
    } else if let Some(name) = rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads")) {
        Route::Uploads { name }
    } else if let Some((name, id)) = split_last(rest, "/blobs/uploads/") {
        Route::Upload { name, id }
    } else if let Some((name, reference)) = split_last(rest, "/manifests/") {
        Route::Manifest { name, reference }
    } else if let Some((name, digest)) = split_last(rest, "/blobs/") {
        Route::Blob { name, digest }
    } else if let Some((name, reference)) = split_first(rest, "/manifests/") {
        // A reference with a '/' (`sha256:../../x`): an endpoint still, whose reference
        // the handler refuses.
        Route::Manifest { name, reference }
    } else if let Some((name, digest)) = split_first(rest, "/blobs/") {
        Route::Blob { name, digest }
    } else {
        return Err(RouteError::NotFound);
    };
    let name = match &route {
        Route::Tags { name } | Route::Uploads { name } => name,
        Route::Upload { name, .. } | Route::Manifest { name, .. } | Route::Blob { name, .. } => name,
        Route::Base | Route::Catalog => return Ok(route),
    };
    validate_repository(name).map_err(RouteError::Name)?;
    Ok(route)
}

/// `(name, last)` when `path` is `<name><marker><last>` with `last` a single, non-empty
/// path segment.
fn split_last<'a>(path: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let at = path.rfind(marker)?;
    let last = &path[at + marker.len()..];
    (!last.is_empty() && !last.contains('/')).then(|| (&path[..at], last))
}

/// `(name, rest)` when `path` is `<name><marker><rest>` at the first marker, with `rest`
/// not empty.
fn split_first<'a>(path: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let at = path.find(marker)?;
    let rest = &path[at + marker.len()..];
    (!rest.is_empty()).then(|| (&path[..at], rest))
}

/// The value of query parameter `key`, percent-decoded (`+` is a space, as in forms).
/// An invalid escape is kept as it is, for the validators after to refuse.
pub(crate) fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == key).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex_value(bytes.get(i + 1)), hex_value(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: Option<&u8>) -> Option<u8> {
    let b = *b?;
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// What a `Range` request header asks of a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// The whole blob: no header, or one this server ignores (malformed, several
    /// ranges, or not in bytes), as RFC 9110 allows.
    Full,
    /// Bytes `start..=end`, within the blob.
    Partial { start: u64, end: u64 },
    /// A single valid range that lies outside the blob: 416.
    Unsatisfiable,
}

/// Reads a `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`) for a blob of `size`.
pub(crate) fn byte_range(header: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    let number = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
    match (first.is_empty(), number(first), number(last)) {
        // bytes=-n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Partial { start: size.saturating_sub(n), end: size - 1 }
        }
        (false, Some(start), end) if last.is_empty() || end.is_some() => {
            if end.is_some_and(|end| end < start) {
                return ByteRange::Full;
            }
            if start >= size {
                return ByteRange::Unsatisfiable;
            }
            let end = end.map_or(size - 1, |end| end.min(size - 1));
            ByteRange::Partial { start, end }
        }
        _ => ByteRange::Full,
    }
}

/// Reads an upload's `Content-Range` header, `<start>-<end>` (the distribution spec's
/// form, without a unit; `bytes ` is tolerated), into `(start, end)`.
pub(crate) fn content_range(header: &str) -> Option<(u64, u64)> {
    let h = header.trim();
    let h = h.strip_prefix("bytes ").or_else(|| h.strip_prefix("bytes=")).unwrap_or(h);
    let h = h.split('/').next()?;
    let (start, end) = h.split_once('-')?;
    let (start, end) = (start.trim().parse::<u64>().ok()?, end.trim().parse::<u64>().ok()?);
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn endpoints() {
        let digest = format!("sha256:{HEX}");
        assert_eq!(parse("/v2/"), Ok(Route::Base));
        assert_eq!(parse("/v2"), Ok(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(parse("/v2/library/nginx/tags/list"), Ok(Route::Tags { name: "library/nginx" }));
        assert_eq!(parse("/v2/library/nginx/manifests/1.27"), Ok(Route::Manifest { name: "library/nginx", reference: "1.27" }));
        assert_eq!(
            parse(&format!("/v2/ghcr.io/org/app/blobs/{digest}")),
            Ok(Route::Blob { name: "ghcr.io/org/app", digest: digest.as_str() })
        );
        assert_eq!(parse("/v2/local/app/blobs/uploads/"), Ok(Route::Uploads { name: "local/app" }));
        assert_eq!(parse("/v2/local/app/blobs/uploads"), Ok(Route::Uploads { name: "local/app" }));
        assert_eq!(parse("/v2/local/app/blobs/uploads/abc"), Ok(Route::Upload { name: "local/app", id: "abc" }));
        // Endpoint words are fine inside names; the last marker decides.
        assert_eq!(parse("/v2/a/manifests/b/manifests/c"), Ok(Route::Manifest { name: "a/manifests/b", reference: "c" }));
        assert_eq!(parse("/v2/blobs/blobs/x"), Ok(Route::Blob { name: "blobs", digest: "x" }));
        // A reference holding a '/' stays an endpoint, for the handler to refuse.
        assert_eq!(parse("/v2/a/blobs/sha256:../../x"), Ok(Route::Blob { name: "a", digest: "sha256:../../x" }));
        assert_eq!(parse("/v2/a/manifests/b/c/"), Ok(Route::Manifest { name: "a", reference: "b/c/" }));
    }

    #[test]
    fn not_endpoints() {
        for path in ["/", "/v1/", "/v2x", "/v2/library/nginx", "/v2/a/manifests/", "/v2/a/blobs/", "/v2/a/tags", "/v2/a/b"] {
            assert_eq!(parse(path), Err(RouteError::NotFound), "{path}");
        }
    }

    #[test]
    fn invalid_names_are_refused_here() {
        for path in [
            "/v2/../etc/manifests/latest",
            "/v2/a/../../etc/manifests/latest",
            "/v2/%2e%2e/etc/manifests/latest",
            "/v2/a%2Fb/manifests/latest",
            "/v2//etc/manifests/latest",
            "/v2/a//b/blobs/x",
            "/v2/A/tags/list",
            "/v2/a/b//blobs/uploads/",
        ] {
            assert!(matches!(parse(path), Err(RouteError::Name(_))), "{path}");
        }
        let long = format!("/v2/{}/manifests/latest", "a".repeat(256));
        assert!(matches!(parse(&long), Err(RouteError::Name(_))));
    }

    #[test]
    fn query_parameters_are_decoded() {
        let q = Some("ns=docker.io&digest=sha256%3Aabc&empty&plus=a+b&bad=%zz%4");
        assert_eq!(query_param(q, "ns").as_deref(), Some("docker.io"));
        assert_eq!(query_param(q, "digest").as_deref(), Some("sha256:abc"));
        assert_eq!(query_param(q, "empty").as_deref(), Some(""));
        assert_eq!(query_param(q, "plus").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(None, "ns"), None);
        // Decoded once only: a doubly encoded digest stays encoded, for the parser to refuse.
        assert_eq!(query_param(Some("digest=sha256%253Aabc"), "digest").as_deref(), Some("sha256%3Aabc"));
    }

    #[test]
    fn ranges() {
        use ByteRange::*;
        let cases = [
            (None, 100, Full),
            (Some("bytes=0-9"), 100, Partial { start: 0, end: 9 }),
            (Some("bytes=10-"), 100, Partial { start: 10, end: 99 }),
            (Some("bytes=-10"), 100, Partial { start: 90, end: 99 }),
            (Some("bytes=-1000"), 100, Partial { start: 0, end: 99 }),
            (Some("bytes=90-1000"), 100, Partial { start: 90, end: 99 }),
            (Some("bytes=99-99"), 100, Partial { start: 99, end: 99 }),
            (Some("bytes=100-"), 100, Unsatisfiable),
            (Some("bytes=100-200"), 100, Unsatisfiable),
            (Some("bytes=-0"), 100, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=9-0"), 100, Full),
            (Some("bytes=0-1,5-6"), 100, Full),
            (Some("items=0-1"), 100, Full),
            (Some("bytes=a-b"), 100, Full),
            (Some("bytes=-"), 100, Full),
            (Some("bytes=+1-2"), 100, Full),
        ];
        for (header, size, expected) in cases {
            assert_eq!(byte_range(header, size), expected, "{header:?} of {size}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("0-99"), Some((0, 99)));
        assert_eq!(content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(content_range("bytes=5-5"), Some((5, 5)));
        assert_eq!(content_range("9-0"), None);
        assert_eq!(content_range("x-1"), None);
        assert_eq!(content_range(""), None);
    }
}
