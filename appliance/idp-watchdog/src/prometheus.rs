//! A small Prometheus HTTP API client: instant queries (`GET /api/v1/query?query=..&time=..`)
//! over plain HTTP/1.1, which is what a loopback or in-lab Prometheus speaks.

use crate::WatchdogError;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one query may take, connection and body included.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

const USER_AGENT: &str = concat!("idp-lab-watchdog/", env!("CARGO_PKG_VERSION"));

/// One sample of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub metric: serde_json::Map<String, Value>,
    /// The value (Prometheus sends it as a string; `NaN` and `±Inf` parse too).
    pub value: f64,
}

/// A client for one Prometheus (cheap to clone: one connection pool).
#[derive(Clone, Debug)]
pub struct Prometheus {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Prometheus {
    /// A client for the Prometheus at `base` (`http://127.0.0.1:9090`, optionally with a path
    /// prefix such as `/prometheus`). Only `http://` is supported.
    pub fn new(base: &str) -> Result<Prometheus, WatchdogError> {
        let trimmed = base.trim_end_matches('/');
        let uri: Uri =
            trimmed.parse().map_err(|e: http::uri::InvalidUri| WatchdogError::Url { url: base.to_owned(), reason: e.to_string() })?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(WatchdogError::Url { url: base.to_owned(), reason: "expected http://host:port".to_owned() });
        }
        if uri.query().is_some() {
            return Err(WatchdogError::Url { url: base.to_owned(), reason: "a query string is not allowed".to_owned() });
        }
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http();
        Ok(Prometheus { base: trimmed.to_owned(), client })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Runs an instant query at `at` and returns its vector (a scalar comes back as one
    /// sample without labels).
    pub async fn instant(&self, query: &str, at: SystemTime) -> Result<Vec<Sample>, WatchdogError> {
        let time = unix_seconds(at)?;
        let url = format!("{}/api/v1/query?query={}&time={time}", self.base, encode(query));
        let body = tokio::time::timeout(QUERY_TIMEOUT, self.get(&url))
            .await
            .map_err(|_| WatchdogError::Timeout { url: url.clone(), seconds: QUERY_TIMEOUT.as_secs() })??;
        parse_response(query, &body)
    }

    /// Runs an instant query whose result is one number: the single sample's value, or 0 for
    /// an empty vector (no series matched, so no events).
    pub async fn instant_number(&self, query: &str, at: SystemTime) -> Result<f64, WatchdogError> {
        let samples = self.instant(query, at).await?;
        match samples.as_slice() {
            [] => Ok(0.0),
            [one] => Ok(one.value),
            many => Err(WatchdogError::Shape { query: query.to_owned(), reason: format!("{} series, expected at most one", many.len()) }),
        }
    }

    async fn get(&self, url: &str) -> Result<(http::StatusCode, Bytes), WatchdogError> {
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| WatchdogError::Url { url: url.to_owned(), reason: e.to_string() })?;
        let request = Request::get(uri)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| WatchdogError::Url { url: url.to_owned(), reason: e.to_string() })?;
        let response = self.client.request(request).await.map_err(|source| WatchdogError::Request { url: url.to_owned(), source })?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|source| WatchdogError::Body { url: url.to_owned(), source })?.to_bytes();
        Ok((status, body))
    }
}

fn parse_response(query: &str, (status, body): &(http::StatusCode, Bytes)) -> Result<Vec<Sample>, WatchdogError> {
    let shape = |reason: String| WatchdogError::Shape { query: query.to_owned(), reason };
    let json: Value = serde_json::from_slice(body).map_err(|source| WatchdogError::Json {
        query: query.to_owned(),
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        source,
    })?;
    if json.get("status").and_then(Value::as_str) != Some("success") {
        return Err(WatchdogError::Query {
            query: query.to_owned(),
            status: status.as_u16(),
            error_type: json.get("errorType").and_then(Value::as_str).unwrap_or("unknown").to_owned(),
            error: json.get("error").and_then(Value::as_str).unwrap_or("no error message").to_owned(),
        });
    }
    let data = json.get("data").ok_or_else(|| shape("no data".to_owned()))?;
    let result = data.get("result").ok_or_else(|| shape("no data.result".to_owned()))?;
    match data.get("resultType").and_then(Value::as_str) {
        Some("vector") => result
            .as_array()
            .ok_or_else(|| shape("data.result is not an array".to_owned()))?
            .iter()
            .map(|s| {
                let metric = s.get("metric").and_then(Value::as_object).cloned().unwrap_or_default();
                let value = s.get("value").ok_or_else(|| shape("a sample without a value".to_owned()))?;
                Ok(Sample { metric, value: sample_value(value).map_err(shape)? })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample { metric: serde_json::Map::new(), value: sample_value(result).map_err(shape)? }]),
        other => Err(shape(format!("result type {other:?}, expected a vector or a scalar"))),
    }
}

/// `[<unix time>, "<value>"]` into the value.
fn sample_value(pair: &Value) -> Result<f64, String> {
    let text = pair.get(1).and_then(Value::as_str).ok_or_else(|| format!("sample {pair} is not [time, \"value\"]"))?;
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        t => t.parse().map_err(|_| format!("sample value {t:?} is not a number")),
    }
}

/// Seconds since the epoch with millisecond precision, as the API's `time` parameter.
fn unix_seconds(at: SystemTime) -> Result<String, WatchdogError> {
    let since = at.duration_since(UNIX_EPOCH).map_err(|_| WatchdogError::Time)?;
    Ok(format!("{}.{:03}", since.as_secs(), since.subsec_millis()))
}

/// Percent-encodes a query parameter (everything but RFC 3986's unreserved characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn response(json: &str) -> (StatusCode, Bytes) {
        (StatusCode::OK, Bytes::from(json.to_owned()))
    }

    #[test]
    fn encodes_promql() {
        assert_eq!(encode("sum(increase(a{b=\"c\"}[5m]))"), "sum%28increase%28a%7Bb%3D%22c%22%7D%5B5m%5D%29%29");
        assert_eq!(encode("a - b"), "a%20-%20b");
    }

    #[test]
    fn parses_vectors_scalars_and_errors() -> Result<(), WatchdogError> {
        let v = parse_response(
            "q",
            &response(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1,"2.5"]}]}}"#),
        )?;
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].value, 2.5);
        let s = parse_response("q", &response(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#))?;
        assert!(s[0].value.is_nan());
        let e = parse_response(
            "q",
            &(StatusCode::BAD_REQUEST, Bytes::from_static(br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)),
        );
        assert!(matches!(e, Err(WatchdogError::Query { ref error_type, status: 400, .. }) if error_type == "bad_data"), "{e:?}");
        assert!(matches!(parse_response("q", &response("<html>")), Err(WatchdogError::Json { .. })));
        assert!(matches!(
            parse_response("q", &response(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)),
            Err(WatchdogError::Shape { .. })
        ));
        Ok(())
    }

    #[test]
    fn refuses_other_schemes() {
        assert!(Prometheus::new("https://x:9090").is_err());
        assert!(Prometheus::new("127.0.0.1:9090").is_err());
        assert!(Prometheus::new("http://127.0.0.1:9090/?a=b").is_err());
        assert!(Prometheus::new("http://127.0.0.1:9090/").is_ok_and(|p| p.base() == "http://127.0.0.1:9090"));
    }

    #[test]
    fn time_has_milliseconds() -> Result<(), WatchdogError> {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250))?, "1700000000.250");
        Ok(())
    }
}
