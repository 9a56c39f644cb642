//! `idp-lab apply`: manifests into a cluster with server-side apply, in stages and
//! waves, with an in-cluster inventory and prune (`docs/apply.md`).

use crate::cli::{ApplyArgs, Global};
use crate::exit::Failure;
use crate::lab::{self, runtime};
use crate::manifests;
use crate::printer::Printer;
use crate::progress::Steps;
use idp_kube::{Action, ApplyReport, Progress};
use std::sync::Mutex;
use std::time::Duration;

/// The deadline without `--timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

pub fn run(global: &Global, printer: Printer, args: ApplyArgs) -> Result<(), Failure> {
    let objects = manifests::load(&args.input)?;
    let timeout = lab::timeout(args.timeout.as_deref(), DEFAULT_TIMEOUT)?;
    runtime()?.block_on(async {
        let (cluster, lab) = manifests::connect(global, &args.target).await?;
        let mut options = manifests::options(&args.input, &lab)?;
        options.prune = args.prune;
        options.wait = args.wait;
        options.timeout = timeout;
        options.dry_run = args.dry_run;
        let quiet = global.quiet || printer.output != crate::cli::Output::Text;
        let mut steps = Steps::new(quiet);
        let note = if args.dry_run { " (dry run: nothing changes)" } else { "" };
        steps.note(&format!("Applying {} object(s) to {}{note}", objects.len(), cluster.server()));
        // The steps, the running wave's name, and its last line.
        let state = Mutex::new((steps, String::new(), String::new()));
        let on_progress = |event: Progress| {
            let Ok(mut state) = state.lock() else { return };
            let (steps, wave_name, line) = &mut *state;
            match event {
                Progress::Wave { stage, wave, objects } => {
                    if !wave_name.is_empty() {
                        steps.done(line);
                    }
                    *wave_name = format!("stage {stage}, wave {wave}");
                    *line = format!("{wave_name}: 0/{objects} applied");
                    steps.start(line);
                }
                Progress::WaitingForKinds { kinds } => steps.detail(&format!("waiting for the API server to serve {}", kinds.join(", "))),
                Progress::Applied { done, total } => {
                    *line = format!("{wave_name}: {done}/{total} applied");
                    steps.update(line);
                }
                Progress::Ready { ready, total } => {
                    *line = format!("{wave_name}: {ready}/{total} ready");
                    steps.update(line);
                }
                Progress::Pruned { object } => steps.detail(&format!("pruned {object}")),
            }
        };
        let read = manifests::read_cache(cluster.server());
        let mut cache = read.clone();
        // A lab's component applied with an inventory is watched for drift by its daemon.
        let watched = options.inventory.as_ref().filter(|_| args.target.name.is_some() && !args.dry_run).map(|inventory| {
            idp_daemon::WatchedComponent {
                component: options.component.clone(),
                namespace: options.namespace.clone(),
                inventory: Some((inventory.name.clone(), inventory.namespace.clone())),
                objects: objects.iter().map(|o| o.value.clone()).collect(),
                heal: true,
            }
        });
        let result = cluster.apply(objects, &options, &mut cache, &on_progress).await;
        manifests::save_cache(cluster.server(), &read, &cache);
        let (mut steps, wave_name, line) = state.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(report) => {
                if !wave_name.is_empty() {
                    steps.done(&line);
                }
                steps.note(&summary(&report));
                if let (Some(component), Some(name)) = (watched, &args.target.name) {
                    watch(global, name, &component, &mut steps).await?;
                }
                printer.result(|| text(&report), &report)
            }
            Err(e) => {
                steps.failed(&format!("{line}: stopped"));
                Err(manifests::failure(e))
            }
        }
    })
}

/// Records the applied component for the lab daemon's drift detection, and has a running
/// daemon pick it up.
async fn watch(global: &Global, lab: &str, component: &idp_daemon::WatchedComponent, steps: &mut Steps) -> Result<(), Failure> {
    let dir = lab::Lab::load(global, &crate::cli::LabArgs { name: Some(lab.to_owned()) })?.dir();
    idp_daemon::record_component(&dir, component).map_err(crate::daemon::failure)?;
    match idp_daemon::status(&dir) {
        idp_daemon::DaemonState::Running { .. } => match idp_daemon::reload(&dir).await {
            Ok(()) => steps.note(&format!("the lab daemon watches {} for drift", component.component)),
            Err(e) => steps
                .detail(&format!("warning: the lab daemon did not reload ({e}); it watches {} from its next start", component.component)),
        },
        idp_daemon::DaemonState::Stopped => {
            steps.note(&format!("the lab daemon watches {} for drift once it runs (`idp-lab up --name {lab}`)", component.component));
        }
    }
    Ok(())
}

/// One line: how many objects did what.
fn summary(report: &ApplyReport) -> String {
    let count = |a: Action| report.objects.iter().filter(|o| o.action == a).count();
    let cached = report.objects.iter().filter(|o| o.cached).count();
    let mut line = format!(
        "{} object(s): {} created, {} configured, {} unchanged ({cached} known from the cache, not sent)",
        report.objects.len(),
        count(Action::Created),
        count(Action::Configured),
        count(Action::Unchanged),
    );
    if !report.pruned.is_empty() || !report.kept.is_empty() {
        line.push_str(&format!(", {} pruned", report.pruned.len()));
    }
    if report.dry_run {
        line.push_str(" (dry run)");
    }
    line
}

/// The text result: each object that changed, each pruned, then the summary.
fn text(report: &ApplyReport) -> String {
    let mut out = String::new();
    let verb = |a: Action| match (a, report.dry_run) {
        (Action::Created, false) => "created",
        (Action::Created, true) => "would be created",
        (Action::Configured, false) => "configured",
        (Action::Configured, true) => "would be configured",
        (Action::Unchanged, _) => "unchanged",
    };
    for object in report.objects.iter().filter(|o| o.action != Action::Unchanged) {
        out.push_str(&format!("{} {}\n", object.object, verb(object.action)));
    }
    for object in &report.pruned {
        out.push_str(&format!("{object} {}\n", if report.dry_run { "would be pruned" } else { "pruned" }));
    }
    for object in &report.kept {
        out.push_str(&format!("{object} kept (annotated idp-lab.dev/prune: disabled)\n"));
    }
    out.push_str(&summary(report));
    out.push('\n');
    out
}
