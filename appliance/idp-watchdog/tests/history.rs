//! The watchdog's history on real sled files: bounded by count, bytes and age (oldest
//! first), kept across a restart, a clear error for a damaged, newer or locked store.

use idp_watchdog::history::{Event, EventKind, History, HistoryError, MAX_EVENT_BYTES, Retention};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn event(at: SystemTime, i: u64) -> Event {
    Event::new(at, EventKind::Drift, format!("ConfigMap demo/cm-{i}"), json!({"i": i, "fields": ["data.key"], "pad": "x".repeat(200)}))
}

fn index(e: &Event) -> u64 {
    e.body["i"].as_u64().unwrap_or(u64::MAX)
}

const WEEK: Duration = Duration::from_secs(7 * 86_400);

#[test]
fn the_store_stays_bounded_and_the_oldest_go_first() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("watchdog.sled");
    // By bytes: 1 MiB holds about 2 800 of these events; write 40 000 (15 MiB).
    let retention = Retention { max_age: WEEK, max_bytes: 1 << 20, max_events: 1_000_000 };
    let history = History::open(&path, retention)?;
    let n = 40_000u64;
    let mut peak_disk = 0;
    for i in 0..n {
        history.record(&event(t0() + Duration::from_millis(i * 10), i))?;
        assert!(history.bytes() <= retention.max_bytes, "after {i}: {} bytes", history.bytes());
        if i % 5_000 == 0 {
            history.flush()?;
            peak_disk = peak_disk.max(history.size_on_disk()?);
        }
    }
    history.flush()?;
    peak_disk = peak_disk.max(history.size_on_disk()?);
    let kept = history.latest(usize::MAX)?;
    assert_eq!(kept.len() as u64, history.len());
    assert!(history.bytes() > retention.max_bytes - 1_000, "{} bytes kept of 1 MiB", history.bytes());
    // Oldest first: what is left is exactly the newest events, in order.
    let first = n - history.len();
    assert_eq!(kept.iter().map(index).collect::<Vec<_>>(), (first..n).collect::<Vec<_>>());
    // sled's files stay bounded too (about 3x the logical bytes, measured at 5-7 MiB).
    assert!(peak_disk < 12 << 20, "sled's files grew to {peak_disk} bytes");
    eprintln!("{} events, {} bytes, peak {} bytes of files", history.len(), history.bytes(), peak_disk);
    drop(history);

    // By count, and the limits hold again at open for a store written with larger ones.
    let small = Retention { max_age: WEEK, max_bytes: 1 << 20, max_events: 500 };
    let history = History::open(&path, small)?;
    assert_eq!(history.len(), 500);
    assert_eq!(history.latest(1)?.first().map(index), Some(n - 1));
    assert_eq!(history.latest(500)?.first().map(index), Some(n - 500));
    for i in n..n + 2_000 {
        history.record(&event(t0() + Duration::from_millis(i * 10), i))?;
        assert!(history.len() <= 500);
    }
    assert_eq!(history.latest(usize::MAX)?.iter().map(index).collect::<Vec<_>>(), (n + 1_500..n + 2_000).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn events_older_than_the_retention_go() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let retention = Retention { max_age: WEEK, ..Retention::default() };
    assert_eq!(Retention::default().max_age, WEEK, "7 days by default");
    let history = History::open(&dir.path().join("watchdog.sled"), retention)?;
    // One event an hour for 10 days: at each write, what is more than 7 days older goes.
    let hour = Duration::from_secs(3_600);
    for i in 0..240u64 {
        history.record(&event(t0() + hour * u32::try_from(i)?, i))?;
    }
    let kept = history.latest(usize::MAX)?;
    assert_eq!(kept.first().map(index), Some(239 - 168), "exactly 7 days before the newest is kept");
    assert_eq!(kept.len(), 169);
    // Nothing recorded for two more days: compact by the (injected) clock.
    history.compact_at(t0() + hour * 239 + Duration::from_secs(2 * 86_400))?;
    assert_eq!(history.latest(usize::MAX)?.first().map(index), Some(239 - 168 + 48));
    assert_eq!(history.len(), 169 - 48);
    // A clock far ahead empties it; the counters agree.
    history.compact_at(t0() + Duration::from_secs(400 * 86_400))?;
    assert!(history.is_empty() && history.bytes() == 0);
    assert!(history.latest(10)?.is_empty());
    Ok(())
}

#[test]
fn events_survive_a_restart_and_since_is_a_range() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("watchdog.sled");
    let history = History::open(&path, Retention::default())?;
    for i in 0..100u64 {
        history.record(&event(t0() + Duration::from_secs(i), i))?;
    }
    // Two events in the same millisecond keep their order.
    history.record(&Event::new(t0() + Duration::from_secs(100), EventKind::PlaybookRun, "playbook a", json!({"i": 100})))?;
    history.record(&Event::new(t0() + Duration::from_secs(100), EventKind::Verdict, "component vault", json!({"i": 101})))?;
    drop(history);

    let history = History::open(&path, Retention::default())?;
    assert_eq!(history.len(), 102);
    let since = history.since(t0() + Duration::from_secs(90))?;
    assert_eq!(since.iter().map(index).collect::<Vec<_>>(), (90..102).collect::<Vec<_>>());
    assert_eq!(since[10].kind, EventKind::PlaybookRun);
    assert_eq!(since[11].subject, "component vault");
    assert_eq!(since[0], event(t0() + Duration::from_secs(90), 90), "the event reads back as written");
    assert_eq!(history.since_limit(t0(), 3)?.iter().map(index).collect::<Vec<_>>(), [99, 100, 101], "the newest of a long range");
    assert!(history.since(t0() + Duration::from_secs(101))?.is_empty());
    assert_eq!(history.since(UNIX_EPOCH)?.len(), 102);
    // Events recorded after the restart sort after the old ones, even at an earlier time.
    history.record(&event(t0() + Duration::from_secs(100), 102))?;
    assert_eq!(history.latest(1)?.first().map(index), Some(102));
    Ok(())
}

#[test]
fn a_second_open_is_locked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("watchdog.sled");
    let _held = History::open(&path, Retention::default())?;
    let err = History::open(&path, Retention::default()).expect_err("held open");
    assert!(matches!(err, HistoryError::Locked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()) && text.contains("held open"), "{text}");
    Ok(())
}

fn fill(path: &Path) -> anyhow::Result<()> {
    let history = History::open(path, Retention::default())?;
    for i in 0..5_000u64 {
        history.record(&event(t0() + Duration::from_millis(i), i))?;
    }
    Ok(())
}

fn assert_damaged(path: &Path, what: &str) {
    match History::open(path, Retention::default()) {
        Ok(h) => panic!("{what}: a damaged store opened with {} events", h.len()),
        Err(e @ HistoryError::Damaged { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{what}: {text}");
            assert!(text.contains("remove that folder"), "{what}: {text}");
            eprintln!("{what}: {text}");
        }
        Err(e) => panic!("{what}: expected Damaged, got {e:?}"),
    }
}

#[test]
fn a_damaged_store_is_a_clear_error_not_a_panic() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = ["striped", "garbled at the start", "garbled in the middle", "truncated", "replaced", "bad conf", "emptied"];
    for (damage, case) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("{damage}.sled"));
        fill(&path)?;
        let db = path.join("db");
        let mut bytes = std::fs::read(&db)?;
        let n = bytes.len();
        anyhow::ensure!(n > 1 << 20, "the store is too small to damage: {n} bytes");
        match damage {
            // 512 bytes of every 64 KiB: sled reads back a shorter log, or nothing.
            0 => bytes.chunks_mut(64 << 10).for_each(|c| {
                let k = c.len().min(512);
                c[..k].fill(0x5a);
            }),
            1 => bytes[..4096].fill(0x5a),
            // 4 KiB from a record in the middle of the log (found by its subject: sled keeps
            // values as written), so the damage falls on data, not on unused segment space.
            // Every copy of it: sled may have written the page again later, and garbling
            // only a superseded copy damages nothing (seen once in CI).
            2 => {
                let needle = b"ConfigMap demo/cm-2500\"";
                let found: Vec<usize> = bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect();
                anyhow::ensure!(!found.is_empty(), "event 2500 is not in the log as written");
                for at in found {
                    let end = (at + 4096).min(n);
                    bytes[at..end].fill(0x5a);
                }
            }
            3 => bytes.truncate(n / 2 + 1234),
            4 => bytes = b"not a sled database".to_vec(),
            5 => std::fs::write(path.join("conf"), "segment_size: banana\n")?,
            _ => bytes.fill(0),
        }
        std::fs::write(&db, &bytes)?;
        assert_damaged(&path, case);
        // Refused again: a refused store is never marked as closed cleanly.
        assert_damaged(&path, case);
    }
    // An untouched store reopens with every event.
    let path = dir.path().join("untouched.sled");
    fill(&path)?;
    let reopened = History::open(&path, Retention::default())?;
    assert_eq!(reopened.len(), 5_000);
    reopened.close()?;
    Ok(())
}

/// `sled::open`, waiting out the lock a just-dropped handle's background thread still
/// holds for a moment.
fn sled_open(path: &std::path::Path) -> anyhow::Result<sled::Db> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

#[test]
fn records_from_a_newer_idp_lab_or_of_another_shape_are_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("watchdog.sled");
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&1_700_000_000_000u64.to_be_bytes());
    {
        let db = sled_open(&path)?;
        db.insert(key, br#"{"kind":"event","schema_version":9,"data":{}}"#.to_vec())?;
        db.flush()?;
    }
    let err = History::open(&path, Retention::default()).expect_err("newer");
    assert!(matches!(err, HistoryError::NewerSchema { found: 9, supported: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("event 1700000000000-0") && err.to_string().contains("upgrade idp-lab"), "{err}");
    {
        let db = sled_open(&path)?;
        db.insert(key, br#"{"kind":"event","schema_version":1,"data":{"at":"soon"}}"#.to_vec())?;
        db.flush()?;
    }
    let err = History::open(&path, Retention::default()).expect_err("damaged record");
    assert!(matches!(err, HistoryError::Damaged { .. }) && err.to_string().contains("event 1700000000000-0"), "{err}");
    Ok(())
}

#[test]
fn events_too_large_or_before_1970_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let history = History::open(&dir.path().join("watchdog.sled"), Retention::default())?;
    let big = Event::new(t0(), EventKind::SloSample, "slo x", json!({"pad": "x".repeat(MAX_EVENT_BYTES)}));
    assert!(matches!(history.record(&big), Err(HistoryError::TooLarge { .. })));
    let early = Event::new(UNIX_EPOCH - Duration::from_secs(1), EventKind::Verdict, "lab", json!({}));
    assert!(matches!(history.record(&early), Err(HistoryError::Time { .. })));
    assert!(history.is_empty());
    Ok(())
}
