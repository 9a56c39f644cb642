//! `idp-lab lock show` and `idp-lab lock update`.

use crate::cli::{Global, LockCommand, LockShowArgs, LockUpdateArgs, Output};
use crate::context::Context;
use crate::exit::{Failure, INPUT, INTERNAL, IO};
use crate::printer::{Printer, table, write_stdout};
use idp_core::catalogue::Catalogue;
use idp_core::lock::{Entry, Lock, LockError, Missing};
use idp_core::profiles::{self, Inputs};
use serde::Serialize;
use std::path::Path;

/// Runs `lock show` or `lock update`.
pub fn run(global: &Global, printer: Printer, cmd: LockCommand) -> Result<(), Failure> {
    match cmd {
        LockCommand::Show(args) => show(global, printer, args),
        LockCommand::Update(args) => update(printer, args),
    }
}

/// The embedded lock, or a lock file.
fn load(path: Option<&Path>) -> Result<Lock, Failure> {
    let Some(path) = path else {
        return Lock::embedded().map_err(|e| broken(e, "the embedded lock", INTERNAL));
    };
    let text = std::fs::read_to_string(path).map_err(|e| Failure::new(IO, format!("failed to read {}: {e}", path.display())))?;
    Lock::parse(&text, &path.display().to_string()).map_err(|e| broken(e, &path.display().to_string(), INPUT))
}

fn broken(e: LockError, what: &str, code: u8) -> Failure {
    let n = e.diagnostics.len();
    Failure::new(code, format!("{what} is broken ({n} problem{})", if n == 1 { "" } else { "s" })).with_details(e.to_string())
}

#[derive(Serialize)]
struct Shown<'a> {
    owner: String,
    kind: &'static str,
    name: String,
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    profiles: Vec<String>,
    entry: Entry<'a>,
}

#[derive(Serialize)]
struct Report<'a> {
    /// The configuration shown, when one was selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    entries: Vec<Shown<'a>>,
    missing: Vec<Missing>,
}

fn show(global: &Global, printer: Printer, args: LockShowArgs) -> Result<(), Failure> {
    let lock = load(args.lock.as_deref())?;
    let catalogue = Catalogue::load()?;
    // Which embedded profiles need each entry.
    let mut needed_by: Vec<(String, Vec<Entry<'_>>)> = Vec::new();
    for name in profiles::names() {
        let inputs = Inputs { profile_flag: Some(&name), ..Inputs::default() };
        let config = profiles::resolve(&inputs, &catalogue.chart_components())?;
        needed_by.push((name, lock.for_profile(&config, &catalogue)));
    }
    // A selected configuration (--profile or --config) narrows the list and says what it lacks.
    let selected = if global.profile.is_some() || global.config.is_some() { Some(Context::load(global, None)?) } else { None };
    let (profile, entries, missing) = match &selected {
        Some(ctx) => {
            let selection = lock.select(&ctx.config, &ctx.catalogue);
            (Some(ctx.config.lab.profile.clone()), selection.entries, selection.missing)
        }
        None => (None, lock.entries(), Vec::new()),
    };
    let shown: Vec<Shown<'_>> = entries
        .into_iter()
        .map(|entry| Shown {
            owner: entry.owner.to_string(),
            kind: entry.kind(),
            name: entry.name(),
            verified: entry.unverified().is_none(),
            digest: entry.digest(),
            reason: entry.unverified(),
            profiles: needed_by.iter().filter(|(_, es)| es.contains(&entry)).map(|(p, _)| p.clone()).collect(),
            entry,
        })
        .collect();
    let report = Report { profile, entries: shown, missing };
    printer.result(|| text(&report), &report)
}

fn text(report: &Report<'_>) -> String {
    let rows: Vec<Vec<String>> = report
        .entries
        .iter()
        .map(|s| {
            let state = if s.verified { "verified".to_owned() } else { "unverified".to_owned() };
            vec![s.owner.clone(), s.kind.to_owned(), s.name.clone(), state, s.profiles.join(",")]
        })
        .collect();
    let mut out = table(&["OWNER", "KIND", "ARTIFACT", "STATE", "PROFILES"], &rows);
    let verified = report.entries.iter().filter(|s| s.verified).count();
    out.push_str(&format!("\n{verified} of {} verified", report.entries.len()));
    if let Some(p) = &report.profile {
        out.push_str(&format!(" for profile {p}"));
    }
    out.push('\n');
    let reasons: Vec<String> = report.entries.iter().filter_map(|s| s.reason.map(|r| format!("  {}: {r}", s.name))).collect();
    if !reasons.is_empty() {
        out.push_str("unverified:\n");
        out.push_str(&reasons.join("\n"));
        out.push('\n');
    }
    if !report.missing.is_empty() {
        out.push_str("missing from the lock:\n");
        for m in &report.missing {
            out.push_str(&format!("  {m}\n"));
        }
    }
    out
}

#[derive(Serialize)]
struct Change {
    owner: String,
    kind: &'static str,
    name: String,
    before: &'static str,
    after: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn state(e: &Entry<'_>) -> &'static str {
    if e.unverified().is_none() { "verified" } else { "unverified" }
}

fn update(printer: Printer, args: LockUpdateArgs) -> Result<(), Failure> {
    let lock = load(args.lock.as_deref())?;
    let client = idp_bundle::Client::new().map_err(|e| Failure::new(INTERNAL, idp_bundle::update::chain(&e)))?;
    let updated = crate::lab::runtime()?
        .block_on(idp_bundle::update(&lock, &client))
        .map_err(|e| Failure::new(INTERNAL, idp_bundle::update::chain(&e)))?;
    let changes: Vec<Change> = lock
        .entries()
        .iter()
        .zip(updated.entries())
        .map(|(before, after)| Change {
            owner: after.owner.to_string(),
            kind: after.kind(),
            name: after.name(),
            before: state(before),
            after: state(&after),
            digest: after.digest(),
            reason: after.unverified().map(str::to_owned),
        })
        .collect();
    let verified = changes.iter().filter(|c| c.after == "verified").count();
    tracing::info!(entries = changes.len(), verified, "lock resolved");
    let yaml = updated.to_yaml();
    let Some(out) = args.out.as_deref().or(args.lock.as_deref()) else {
        // No file to write: the lock itself is the result.
        return match printer.output {
            Output::Text | Output::Yaml => write_stdout(&yaml),
            Output::Json => printer.result(String::new, &updated),
        };
    };
    std::fs::write(out, &yaml).map_err(|e| Failure::new(IO, format!("failed to write {}: {e}", out.display())))?;
    let rows: Vec<Vec<String>> =
        changes.iter().map(|c| vec![c.owner.clone(), c.kind.to_owned(), c.name.clone(), format!("{} -> {}", c.before, c.after)]).collect();
    printer.result(
        || {
            format!(
                "{}\nwrote {} ({verified} of {} verified)\n",
                table(&["OWNER", "KIND", "ARTIFACT", "STATE"], &rows),
                out.display(),
                changes.len()
            )
        },
        &changes,
    )
}
