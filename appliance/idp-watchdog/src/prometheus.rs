//! A small Prometheus HTTP API client: instant queries (`GET /api/v1/query?query=..&time=..`)
//! and range queries (`GET /api/v1/query_range?query=..&start=..&end=..&step=..`), over plain
//! HTTP/1.1 to a loopback or in-lab Prometheus ([`Prometheus::new`]), or through the API
//! server's service proxy to the lab's in-cluster one ([`Prometheus::in_cluster`],
//! [`Prometheus::lab`]), which the host reaches with the lab's kubeconfig and no network path
//! to the pods.
//!
//! [`Prometheus::evaluate_range`] evaluates an SLO at every step of a time range from one
//! range query per window and count, the same PromQL [`crate::evaluate`] runs as instant
//! queries: Prometheus evaluates a range query at `start`, `start + step`, ... as it would an
//! instant query at each of those times, so each step equals the instant evaluation then.

use crate::WatchdogError;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use idp_core::slo::{self, Counts, Evaluation, Slo, format_duration};
use idp_kube::Cluster;
use idp_kube::proxy::ProxyRequest;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one query may take, connection and body included.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The most steps [`Prometheus::evaluate_range`] asks for in one range: Prometheus' own
/// limit on the points of one series in a range query's answer.
pub const MAX_RANGE_POINTS: u64 = 11_000;

/// The namespace of the lab's in-cluster Prometheus (the `kube-prometheus-stack` component).
pub const LAB_NAMESPACE: &str = "observability";
/// The Service of the lab's in-cluster Prometheus: `kube-prometheus-stack` released as
/// `prometheus` names it `<release>-kube-prometheus` (truncated to 26 characters) +
/// `-prometheus`.
pub const LAB_SERVICE: &str = "prometheus-kube-prometheus-prometheus";
/// The port of [`LAB_SERVICE`] (named `http-web`).
pub const LAB_PORT: &str = "9090";

const USER_AGENT: &str = concat!("idp-lab-watchdog/", env!("CARGO_PKG_VERSION"));

/// One sample of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub metric: serde_json::Map<String, Value>,
    /// The value (Prometheus sends it as a string; `NaN` and `±Inf` parse too).
    pub value: f64,
}

/// One series of a range query's matrix: its labels and its points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub metric: serde_json::Map<String, Value>,
    /// Its points: the evaluation time (to the millisecond) and the value. A step at which
    /// the expression had no value has no point.
    pub points: Vec<(SystemTime, f64)>,
}

/// How requests reach Prometheus.
#[derive(Clone)]
enum Transport {
    /// Plain HTTP to `base`.
    Direct { base: String, client: Client<HttpConnector, Empty<Bytes>> },
    /// Through the API server's service proxy.
    Proxy { cluster: Cluster, namespace: String, service: String, port: String, endpoint: String },
}

/// A client for one Prometheus (cheap to clone: one connection pool).
#[derive(Clone)]
pub struct Prometheus {
    transport: Transport,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus").field("at", &self.base()).finish_non_exhaustive()
    }
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
        Ok(Prometheus { transport: Transport::Direct { base: trimmed.to_owned(), client } })
    }

    /// A client for the Prometheus behind port `port` (number or name) of Service `service`
    /// in `namespace`, reached through the API server's service proxy of `cluster`. Nothing
    /// is sent yet; names that are not DNS names fail each query
    /// ([`WatchdogError::Proxy`]).
    pub fn in_cluster(cluster: &Cluster, namespace: &str, service: &str, port: &str) -> Prometheus {
        let endpoint = format!("service {namespace}/{service}:{port} through {}", cluster.server());
        Prometheus {
            transport: Transport::Proxy {
                cluster: cluster.clone(),
                namespace: namespace.to_owned(),
                service: service.to_owned(),
                port: port.to_owned(),
                endpoint,
            },
        }
    }

    /// The lab's in-cluster Prometheus ([`LAB_NAMESPACE`], [`LAB_SERVICE`], [`LAB_PORT`])
    /// through the API server's service proxy.
    pub fn lab(cluster: &Cluster) -> Prometheus {
        Prometheus::in_cluster(cluster, LAB_NAMESPACE, LAB_SERVICE, LAB_PORT)
    }

    /// Where queries go: the base URL without a trailing slash, or, through the service
    /// proxy, `service <namespace>/<name>:<port> through <API server>`.
    pub fn base(&self) -> &str {
        match &self.transport {
            Transport::Direct { base, .. } => base,
            Transport::Proxy { endpoint, .. } => endpoint,
        }
    }

    /// Runs an instant query at `at` and returns its vector (a scalar comes back as one
    /// sample without labels).
    pub async fn instant(&self, query: &str, at: SystemTime) -> Result<Vec<Sample>, WatchdogError> {
        let time = unix_seconds(at)?;
        let path = format!("api/v1/query?query={}&time={time}", encode(query));
        let response = self.get(&path).await?;
        parse_response(query, &response)
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

    /// Runs a range query from `start` to `end` (both to the millisecond) every `step` (sent
    /// as a Prometheus duration, to the millisecond) and returns its matrix. Nothing is
    /// checked here: a range Prometheus refuses (a zero step, `end` before `start`, more than
    /// 11,000 points per series) is its [`WatchdogError::Query`] answer.
    pub async fn query_range(&self, query: &str, start: SystemTime, end: SystemTime, step: Duration) -> Result<Vec<Series>, WatchdogError> {
        let (start, end) = (unix_seconds(start)?, unix_seconds(end)?);
        let path = format!("api/v1/query_range?query={}&start={start}&end={end}&step={}", encode(query), format_duration(step));
        let response = self.get(&path).await?;
        parse_matrix(query, &response)
    }

    /// Runs a range query whose result is one series (or none: no series matched) and returns
    /// its points by Unix milliseconds.
    pub async fn range_number(
        &self,
        query: &str,
        start: SystemTime,
        end: SystemTime,
        step: Duration,
    ) -> Result<BTreeMap<u64, f64>, WatchdogError> {
        let series = self.query_range(query, start, end, step).await?;
        match series.as_slice() {
            [] => Ok(BTreeMap::new()),
            [one] => one.points.iter().map(|(t, v)| Ok((unix_ms(*t)?, *v))).collect(),
            many => Err(WatchdogError::Shape { query: query.to_owned(), reason: format!("{} series, expected at most one", many.len()) }),
        }
    }

    /// Evaluates `slo` at every step of a range: at `start`, `start + step`, ... up to `end`
    /// (times taken to the millisecond), as [`crate::evaluate`] would at each of those times,
    /// from one range query per window and count (`2 ×` [`Slo::windows`] queries in all).
    ///
    /// A step at which a count has no value counts 0 events, as an empty instant answer
    /// does; a latency SLI's errors below 0 count 0. Refused before any query
    /// ([`WatchdogError::Range`]): a step under 1 ms, `end` before `start`, and more than
    /// [`MAX_RANGE_POINTS`] steps.
    pub async fn evaluate_range(
        &self,
        slo: &Slo,
        start: SystemTime,
        end: SystemTime,
        step: Duration,
    ) -> Result<Vec<(SystemTime, Evaluation)>, WatchdogError> {
        let steps = range_steps(start, end, step)?;
        let mut per_window = BTreeMap::new();
        for window in slo.windows() {
            let queries = slo.queries(window);
            let (total, errors) = tokio::try_join!(
                self.range_number(&queries.total, start, end, step),
                self.range_number(&queries.errors, start, end, step)
            )?;
            per_window.insert(window, (total, errors));
        }
        let mut out = Vec::with_capacity(steps.len());
        for ms in steps {
            let mut counts = BTreeMap::new();
            for (window, (total, errors)) in &per_window {
                let total = total.get(&ms).copied().unwrap_or(0.0);
                let errors = errors.get(&ms).copied().unwrap_or(0.0).max(0.0);
                let c = Counts::new(total, errors).map_err(|source| WatchdogError::Slo { slo: slo.name.clone(), source })?;
                counts.insert(*window, c);
            }
            let evaluation = slo::evaluate(slo, &counts).map_err(|source| WatchdogError::Slo { slo: slo.name.clone(), source })?;
            out.push((UNIX_EPOCH + Duration::from_millis(ms), evaluation));
        }
        Ok(out)
    }

    /// GETs `path` (below the base, with its query) within [`QUERY_TIMEOUT`]: the status and
    /// the body, whatever the status.
    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), WatchdogError> {
        let what = format!("{}/{path}", self.base());
        tokio::time::timeout(QUERY_TIMEOUT, self.send(path, &what))
            .await
            .map_err(|_| WatchdogError::Timeout { url: what.clone(), seconds: QUERY_TIMEOUT.as_secs() })?
    }

    async fn send(&self, path: &str, what: &str) -> Result<(StatusCode, Bytes), WatchdogError> {
        match &self.transport {
            Transport::Direct { base, client } => {
                let url = format!("{base}/{path}");
                let uri: Uri =
                    url.parse().map_err(|e: http::uri::InvalidUri| WatchdogError::Url { url: url.clone(), reason: e.to_string() })?;
                let request = Request::get(uri)
                    .header(header::USER_AGENT, USER_AGENT)
                    .header(header::ACCEPT, "application/json")
                    .body(Empty::new())
                    .map_err(|e| WatchdogError::Url { url: url.clone(), reason: e.to_string() })?;
                let response = client.request(request).await.map_err(|source| WatchdogError::Request { url: url.clone(), source })?;
                let status = response.status();
                let body = response.into_body().collect().await.map_err(|source| WatchdogError::Body { url, source })?.to_bytes();
                Ok((status, body))
            }
            Transport::Proxy { cluster, namespace, service, port, endpoint } => {
                let request = ProxyRequest {
                    method: http::Method::GET,
                    path: path.to_owned(),
                    headers: vec![("Accept".to_owned(), "application/json".to_owned())],
                    body: Vec::new(),
                };
                let response = cluster
                    .service_proxy(namespace, service, port, request)
                    .await
                    .map_err(|source| WatchdogError::Proxy { endpoint: endpoint.clone(), source })?;
                let status = StatusCode::from_u16(response.status).map_err(|_| WatchdogError::Url {
                    url: what.to_owned(),
                    reason: format!("HTTP status {} is not valid", response.status),
                })?;
                Ok((status, Bytes::from(response.body)))
            }
        }
    }
}

/// The steps of a range in Unix milliseconds, as Prometheus evaluates them: `start`,
/// `start + step`, ... while not after `end`.
fn range_steps(start: SystemTime, end: SystemTime, step: Duration) -> Result<Vec<u64>, WatchdogError> {
    let range = |reason: String| WatchdogError::Range { reason };
    let step_ms = u64::try_from(step.as_millis()).map_err(|_| range("the step is too large".to_owned()))?;
    if step_ms == 0 {
        return Err(range(format!("the step {step:?} is under 1 ms")));
    }
    let (start_ms, end_ms) = (unix_ms(start)?, unix_ms(end)?);
    if end_ms < start_ms {
        return Err(range(format!("the end is {} before the start", format_duration(Duration::from_millis(start_ms - end_ms)))));
    }
    let points = (end_ms - start_ms) / step_ms + 1;
    if points > MAX_RANGE_POINTS {
        return Err(range(format!(
            "{points} steps of {} is more than the {MAX_RANGE_POINTS} Prometheus answers at once: take a larger step or a shorter range",
            format_duration(step)
        )));
    }
    Ok((0..points).map(|k| start_ms + k * step_ms).collect())
}

/// The `data` of a successful answer, or Prometheus' refusal.
fn answer_data<'a>(query: &str, (status, body): &(StatusCode, Bytes), json: &'a mut Value) -> Result<&'a Value, WatchdogError> {
    *json = serde_json::from_slice(body).map_err(|source| WatchdogError::Json {
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
    json.get("data").ok_or_else(|| WatchdogError::Shape { query: query.to_owned(), reason: "no data".to_owned() })
}

fn parse_response(query: &str, response: &(StatusCode, Bytes)) -> Result<Vec<Sample>, WatchdogError> {
    let shape = |reason: String| WatchdogError::Shape { query: query.to_owned(), reason };
    let mut json = Value::Null;
    let data = answer_data(query, response, &mut json)?;
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

fn parse_matrix(query: &str, response: &(StatusCode, Bytes)) -> Result<Vec<Series>, WatchdogError> {
    let shape = |reason: String| WatchdogError::Shape { query: query.to_owned(), reason };
    let mut json = Value::Null;
    let data = answer_data(query, response, &mut json)?;
    let result = data.get("result").ok_or_else(|| shape("no data.result".to_owned()))?;
    match data.get("resultType").and_then(Value::as_str) {
        Some("matrix") => result
            .as_array()
            .ok_or_else(|| shape("data.result is not an array".to_owned()))?
            .iter()
            .map(|s| {
                let metric = s.get("metric").and_then(Value::as_object).cloned().unwrap_or_default();
                let values = s.get("values").and_then(Value::as_array).ok_or_else(|| shape("a series without values".to_owned()))?;
                let points = values
                    .iter()
                    .map(|pair| Ok((sample_time(pair).map_err(shape)?, sample_value(pair).map_err(shape)?)))
                    .collect::<Result<Vec<_>, WatchdogError>>()?;
                Ok(Series { metric, points })
            })
            .collect(),
        other => Err(shape(format!("result type {other:?}, expected a matrix"))),
    }
}

/// `[<unix time>, "<value>"]` into the time, to the millisecond.
fn sample_time(pair: &Value) -> Result<SystemTime, String> {
    let seconds = pair.get(0).and_then(Value::as_f64).ok_or_else(|| format!("sample {pair} is not [time, \"value\"]"))?;
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("sample time {seconds} is not a time after 1970"));
    }
    // Prometheus' times are whole milliseconds; the float only needs rounding back.
    let ms = (seconds * 1000.0).round();
    if ms > u64::MAX as f64 {
        return Err(format!("sample time {seconds} is out of range"));
    }
    Ok(UNIX_EPOCH + Duration::from_millis(ms as u64))
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

/// Milliseconds since the epoch.
fn unix_ms(at: SystemTime) -> Result<u64, WatchdogError> {
    let since = at.duration_since(UNIX_EPOCH).map_err(|_| WatchdogError::Time)?;
    u64::try_from(since.as_millis()).map_err(|_| WatchdogError::Time)
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
    fn parses_matrices() -> Result<(), WatchdogError> {
        let m = parse_matrix(
            "q",
            &response(
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1700000000.25,"2.5"],[1700000060,"+Inf"]]}]}}"#,
            ),
        )?;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].points[0], (UNIX_EPOCH + Duration::from_millis(1_700_000_000_250), 2.5));
        assert_eq!(m[0].points[1].0, UNIX_EPOCH + Duration::from_secs(1_700_000_060));
        assert!(m[0].points[1].1.is_infinite());
        // An instant answer where a matrix belongs, a point without a time, an error.
        assert!(matches!(
            parse_matrix("q", &response(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)),
            Err(WatchdogError::Shape { .. })
        ));
        assert!(matches!(
            parse_matrix("q", &response(r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[["x","1"]]}]}}"#)),
            Err(WatchdogError::Shape { .. })
        ));
        assert!(matches!(
            parse_matrix("q", &(StatusCode::BAD_REQUEST, Bytes::from_static(br#"{"status":"error","errorType":"bad_data","error":"x"}"#))),
            Err(WatchdogError::Query { status: 400, .. })
        ));
        Ok(())
    }

    #[test]
    fn range_steps_are_prometheus_steps() -> Result<(), WatchdogError> {
        let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(range_steps(t(1000), t(4500), Duration::from_secs(1))?, [1000, 2000, 3000, 4000]);
        assert_eq!(range_steps(t(1000), t(1000), Duration::from_secs(60))?, [1000]);
        assert!(matches!(range_steps(t(1000), t(2000), Duration::ZERO), Err(WatchdogError::Range { .. })));
        assert!(matches!(range_steps(t(1000), t(2000), Duration::from_micros(999)), Err(WatchdogError::Range { .. })));
        let e = range_steps(t(2000), t(1000), Duration::from_secs(1));
        assert!(matches!(&e, Err(WatchdogError::Range { reason }) if reason.contains("before the start")), "{e:?}");
        assert_eq!(range_steps(t(0), t(10_999_000), Duration::from_secs(1))?.len(), 11_000);
        assert!(matches!(range_steps(t(0), t(11_000_000), Duration::from_secs(1)), Err(WatchdogError::Range { .. })));
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
