//! The pages the entry answers itself: the landing page, 404, 503 and 421. Plain HTML
//! with inline style, nothing fetched from anywhere (they must work offline), and every
//! value from the cluster escaped.

use idp_core::routes::{Health, Route};
use idp_kube::RouteSnapshot;
use std::fmt::Write as _;

/// HTML-escapes `text` for element content and double-quoted attributes.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, refresh: bool, body: &str) -> String {
    let refresh = if refresh { r#"<meta http-equiv="refresh" content="5">"# } else { "" };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<title>{title}</title>
<style>
body{{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1d2430}}
h1{{font-size:1.4rem}} table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e6ea}}
td:first-child{{white-space:nowrap}} code{{font-size:.9em}} .ok{{color:#137333}} .bad{{color:#b3261e}} .muted{{color:#5f6b7a}}
</style></head>
<body>
{body}
<p class="muted">idp-lab {version}</p>
</body></html>
"#,
        title = escape(title),
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// The table of routes, each hostname linked through `origin`.
fn route_table(routes: &[Route], origin: &dyn Fn(&str) -> String) -> String {
    let mut out = String::from("<table><tr><th>Host</th><th>Route</th><th>Backend</th><th>Health</th></tr>\n");
    for route in routes {
        let hosts: Vec<String> = if route.hostnames.is_empty() {
            vec!["<span class=\"muted\">(every name)</span>".to_owned()]
        } else {
            route
                .hostnames
                .iter()
                .map(|h| {
                    if h.starts_with("*.") {
                        format!("<code>{}</code>", escape(h))
                    } else {
                        format!("<a href=\"{}/\">{}</a>", escape(&origin(h)), escape(h))
                    }
                })
                .collect()
        };
        let backends: Vec<String> = route.backends.iter().map(|b| format!("<code>{}</code>", escape(&b.to_string()))).collect();
        let health = match &route.health {
            Health::Ready => "<span class=\"ok\">ready</span>".to_owned(),
            Health::NotReady { reason } => format!("<span class=\"bad\">not ready</span>: {}", escape(reason)),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}/{}</code></td><td>{}</td><td>{}</td></tr>",
            hosts.join("<br>"),
            escape(&route.namespace),
            escape(&route.name),
            backends.join("<br>"),
            health
        );
    }
    out.push_str("</table>\n");
    out
}

fn snapshot_note(snapshot: &RouteSnapshot) -> String {
    let mut out = String::new();
    if !snapshot.synced {
        out.push_str("<p class=\"bad\">The routes are not known yet: the cluster's API has not answered.</p>\n");
    }
    if let Some(error) = &snapshot.error {
        let _ = writeln!(out, "<p class=\"bad\">{}</p>", escape(error));
    }
    out
}

/// The landing page at the bare suffix: every route of the lab.
pub(super) fn landing(suffix: &str, snapshot: &RouteSnapshot, origin: &dyn Fn(&str) -> String) -> String {
    let mut body = format!("<h1>idp-lab · <code>{}</code></h1>\n", escape(suffix));
    body.push_str(&snapshot_note(snapshot));
    if snapshot.routes.is_empty() {
        body.push_str("<p>No routes yet: nothing in the cluster has an HTTPRoute with a backend.</p>\n");
    } else {
        let ready = snapshot.routes.iter().filter(|r| r.health.is_ready()).count();
        let _ = writeln!(body, "<p>{ready} of {} routes ready.</p>", snapshot.routes.len());
        body.push_str(&route_table(&snapshot.routes, origin));
    }
    page(&format!("idp-lab · {suffix}"), false, &body)
}

/// The 404 page for `host`, under the suffix but served by no route.
pub(super) fn not_found(host: &str, snapshot: &RouteSnapshot, origin: &dyn Fn(&str) -> String) -> String {
    let mut body = format!("<h1>No route for <code>{}</code></h1>\n", escape(host));
    body.push_str("<p>No HTTPRoute in the lab has this hostname.</p>\n");
    body.push_str(&snapshot_note(snapshot));
    if snapshot.routes.is_empty() {
        body.push_str("<p>The lab has no routes yet.</p>\n");
    } else {
        body.push_str("<p>The routes that exist:</p>\n");
        body.push_str(&route_table(&snapshot.routes, origin));
    }
    page(&format!("No route for {host}"), false, &body)
}

/// The 503 page for `host`, whose route `route` cannot serve because of `reason`.
pub(super) fn unavailable(host: &str, route: &str, reason: &str) -> String {
    let body = format!(
        "<h1><code>{}</code> is not ready</h1>\n<p>Route <code>{}</code>: {}.</p>\n<p class=\"muted\">This page reloads every 5 seconds; \
         <code>idp-lab urls</code> shows every route's health.</p>\n",
        escape(host),
        escape(route),
        escape(reason)
    );
    page(&format!("{host} is not ready"), true, &body)
}

/// The 421 page: `host` asked on a connection made for `sni`.
pub(super) fn misdirected(host: &str, sni: &str) -> String {
    let body = format!(
        "<h1>Misdirected request</h1>\n<p>This connection was made for <code>{}</code>; open <code>{}</code> on a new connection.</p>\n",
        escape(sni),
        escape(host)
    );
    page("Misdirected request", false, &body)
}
