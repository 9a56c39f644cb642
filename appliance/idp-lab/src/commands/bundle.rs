//! `idp-lab bundle create|verify|inspect` (docs/bundle.md).

use crate::cli::{BundleCommand, BundleCreateArgs, BundleFileArgs, Global};
use crate::context::Context;
use crate::exit::{Failure, INPUT, INTERNAL, IO};
use crate::printer::{Printer, table};
use crate::progress::Steps;
use idp_bundle::bundle::chain;
use idp_bundle::create::{Event, Item, image_item, items_from_lock, merge};
use idp_bundle::{BundleError, CreateOptions};
use idp_core::lock::Lock;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `bundle create`, `bundle verify` or `bundle inspect`.
pub fn run(global: &Global, printer: Printer, cmd: BundleCommand) -> Result<(), Failure> {
    match cmd {
        BundleCommand::Create(args) => create(global, printer, args),
        BundleCommand::Verify(args) => verify(printer, args),
        BundleCommand::Inspect(args) => inspect(printer, args),
    }
}

fn failure(e: &BundleError) -> Failure {
    let code = match e {
        BundleError::Io { .. } | BundleError::Fetch { .. } => IO,
        BundleError::Walk { .. } => INTERNAL,
        _ => INPUT,
    };
    Failure::new(code, chain(e))
}

fn load(path: Option<&Path>) -> Result<Lock, Failure> {
    let broken =
        |e: idp_core::lock::LockError, what: &str, code| Failure::new(code, format!("{what} is broken")).with_details(e.to_string());
    let Some(path) = path else {
        return Lock::embedded().map_err(|e| broken(e, "the embedded lock", INTERNAL));
    };
    let text = std::fs::read_to_string(path).map_err(|e| Failure::new(IO, format!("failed to read {}: {e}", path.display())))?;
    Lock::parse(&text, &path.display().to_string()).map_err(|e| broken(e, &path.display().to_string(), INPUT))
}

/// What to bundle: the lock's entries for the configuration (all of a `--lock` file's
/// when no profile or configuration is selected), then `--image`.
fn items(global: &Global, args: &BundleCreateArgs) -> Result<Vec<Item>, Failure> {
    let mut items = Vec::new();
    if !args.no_lock {
        let lock = load(args.lock.as_deref())?;
        let entries = if args.lock.is_some() && global.profile.is_none() && global.config.is_none() {
            lock.entries()
        } else {
            let ctx = Context::load(global, None)?;
            let selection = lock.select(&ctx.config, &ctx.catalogue);
            if !selection.missing.is_empty() {
                let lines: Vec<String> = selection.missing.iter().map(|m| format!("  {m}")).collect();
                return Err(Failure::new(
                    INPUT,
                    format!("the lock lacks {} artifacts profile {} needs", lines.len(), ctx.config.lab.profile),
                )
                .with_details(format!("{}\nrun `idp-lab lock update` on a connected machine", lines.join("\n"))));
            }
            selection.entries
        };
        items = items_from_lock(&entries).map_err(|e| failure(&e))?;
    }
    for reference in &args.image {
        merge(&mut items, image_item(reference, "--image").map_err(|e| failure(&e))?);
    }
    if items.is_empty() {
        return Err(Failure::new(INPUT, "nothing to bundle: --no-lock needs at least one --image"));
    }
    Ok(items)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn create(global: &Global, printer: Printer, args: BundleCreateArgs) -> Result<(), Failure> {
    let items = items(global, &args)?;
    let options = CreateOptions { out: args.out.clone(), platforms: args.platform.clone(), allow_unverified: args.allow_unverified };
    // Images come through the configured mirrors first, as the nodes pull them.
    let mirrors = Context::load(global, None)?.config.registry.mirrors;
    let client = idp_bundle::Client::new().map_err(|e| Failure::new(INTERNAL, chain(&e)))?.with_mirrors(&mirrors);
    let mut steps = Steps::new(global.quiet || printer.output != crate::cli::Output::Text);
    for (registry, endpoints) in &mirrors {
        steps.note(&format!("{registry} through {} (registry.mirrors)", endpoints.join(", ")));
    }
    if idp_bundle::create::has_partial(&args.out) {
        steps.note(&format!("resuming from {}.partial/", args.out.display()));
    }
    let (mut current, mut blobs, mut last) = (String::new(), 0usize, Instant::now());
    let mut on_event = |event: Event| match event {
        Event::Artifact { index, total, name } => {
            if !current.is_empty() {
                steps.done(&current);
            }
            current = format!("[{index}/{total}] {name}");
            steps.start(&current);
        }
        Event::Blob { .. } => blobs += 1,
        Event::Bytes(n) => {
            if last.elapsed() > Duration::from_millis(200) {
                last = Instant::now();
                steps.update(&format!("{current}: {blobs} blobs, {} fetched", mib(n)));
            }
        }
        Event::Warning(text) => {
            steps.detail(&format!("warning: {text}"));
            tracing::warn!("{text}");
        }
        Event::Writing(path) => {
            steps.done(&current);
            current = format!("writing {}", path.display());
            steps.start(&current);
        }
    };
    let created = crate::lab::runtime()?.block_on(idp_bundle::create(&client, &items, &options, &mut on_event));
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            if !current.is_empty() {
                steps.failed(&current);
            }
            return Err(failure(&e));
        }
    };
    steps.done(&current);
    printer.result(
        || {
            format!(
                "wrote {} ({}, {} artifacts; {} blobs fetched, {} already present, {} fetched)\n",
                created.path.display(),
                mib(created.size),
                created.artifacts.len(),
                created.fetched,
                created.reused,
                mib(created.bytes_fetched)
            )
        },
        &created,
    )
}

fn verify(printer: Printer, args: BundleFileArgs) -> Result<(), Failure> {
    let v = idp_bundle::verify(&args.file).map_err(|e| failure(&e))?;
    let rows: Vec<Vec<String>> = v
        .problems
        .iter()
        .map(|p| vec![p.artifact.clone(), p.digest.as_ref().map(ToString::to_string).unwrap_or_default(), p.reason.clone()])
        .collect();
    printer.result(
        || {
            if v.ok() {
                format!("{}: {} artifacts, {} blobs ({}), every digest verified\n", v.path.display(), v.artifacts, v.blobs, mib(v.bytes))
            } else {
                format!("{}\n{} problems in {}\n", table(&["ARTIFACT", "BLOB", "PROBLEM"], &rows), v.problems.len(), v.path.display())
            }
        },
        &v,
    )?;
    if v.ok() { Ok(()) } else { Err(Failure::silent(INPUT)) }
}

fn inspect(printer: Printer, args: BundleFileArgs) -> Result<(), Failure> {
    let i = idp_bundle::inspect(&args.file).map_err(|e| failure(&e))?;
    let rows: Vec<Vec<String>> = i
        .artifacts
        .iter()
        .map(|a| {
            let state = if a.error.is_some() {
                "incomplete"
            } else if a.unverified.is_some() {
                "unverified"
            } else {
                ""
            };
            vec![a.name.clone(), a.kind.to_string(), a.platforms.join(","), mib(a.size), state.to_owned()]
        })
        .collect();
    printer.result(
        || {
            format!(
                "{}\n{} artifacts, {} blobs, {} ({} file)\n",
                table(&["ARTIFACT", "KIND", "PLATFORMS", "SIZE", "STATE"], &rows),
                i.artifacts.len(),
                i.blobs,
                mib(i.bytes),
                mib(i.file_size)
            )
        },
        &i,
    )
}
