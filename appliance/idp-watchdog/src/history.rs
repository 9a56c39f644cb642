//! The watchdog's history: drift events, verdict changes, SLO samples and playbook runs,
//! in a sled database of its own that the daemon holds open while it runs (the state
//! store's open-per-operation rule is for the CLI's records; see `idp-state`).
//!
//! Keys are ordered by time (8 bytes of Unix milliseconds, then an 8-byte sequence number
//! from sled's persistent id generator, both big-endian), so [`History::since`] is a range
//! scan and the oldest event is always the first key. Every value is the same envelope
//! as the state store's records (`kind`, `schema_version`, `data`).
//!
//! The store stays bounded: every [`History::record`] drops the oldest events while the
//! store holds more than [`Retention::max_events`] events or [`Retention::max_bytes`]
//! bytes of keys and values, or events older than [`Retention::max_age`] before the
//! newest one; [`History::compact`] applies the age limit against the clock, for a daemon
//! that records nothing for a while. The counts are kept in memory and rebuilt by one
//! scan at [`History::open`], which also reads every record, so a damaged store fails at
//! open with [`HistoryError::Damaged`] rather than later.
//!
//! Damage sled does not see: sled reads a log it cannot parse only up to the last good
//! point, as after a crash, so garbled or truncated files may open with fewer events, or
//! none, and no error. A marker beside the events (its own tree) says how many events the
//! store held and its newest key when it was last closed cleanly; when it was, any other
//! count read back is damage. After a crash (the marker says "open") what sled recovered
//! is taken as it is. sled 0.34 also panics on some damaged files: [`History::open`]
//! catches that and answers [`HistoryError::Damaged`].

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The schema version of the events this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The envelope's `kind` of every history record.
const RECORD_KIND: &str = "event";

/// The largest event [`History::record`] accepts, encoded (a playbook run with its
/// results is a few KiB; this keeps one event from evicting the whole history).
pub const MAX_EVENT_BYTES: usize = 256 << 10;

/// How many events [`History::since`] returns at most (the newest of them).
pub const SINCE_LIMIT: usize = 10_000;

/// sled's page cache: small, since the daemon reads little and its memory is budgeted.
const CACHE_BYTES: u64 = 4 << 20;

/// Errors of the history store.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Another process holds the store open.
    #[error(
        "the watchdog history at {} is held open by another process (the lab daemon holds it while it runs): read it through the daemon, or stop the daemon first",
        path.display()
    )]
    Locked {
        /// The store's folder.
        path: PathBuf,
    },
    /// The store's files do not make a database, or a record in it does not decode.
    #[error(
        "the watchdog history at {} is damaged ({reason}); it holds only past events: remove that folder and the daemon starts a new history",
        path.display()
    )]
    Damaged {
        /// The store's folder.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// A record was written by a newer idp-lab.
    #[error(
        "event {key} in the watchdog history at {} has schema version {found}, newer than the {supported} this idp-lab reads; upgrade idp-lab, or remove that folder (it holds only past events)",
        path.display()
    )]
    NewerSchema {
        /// The store's folder.
        path: PathBuf,
        /// The record's key, as `<unix ms>-<sequence>`.
        key: String,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// sled failed (a disk error, a full disk, ...).
    #[error("failed to {action} the watchdog history at {}", path.display())]
    Store {
        /// What was being done.
        action: &'static str,
        /// The store's folder.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// An event is too large to keep.
    #[error("an event of {size} bytes ({kind} {subject}) is larger than the {MAX_EVENT_BYTES} the history keeps")]
    TooLarge {
        /// Its kind.
        kind: EventKind,
        /// Its subject.
        subject: String,
        /// Its encoded size.
        size: usize,
    },
    /// An event is dated before 1970.
    #[error("an event ({kind} {subject}) is dated before the Unix epoch")]
    Time {
        /// Its kind.
        kind: EventKind,
        /// Its subject.
        subject: String,
    },
    /// An event does not encode as JSON (a map with non-string keys in its body).
    #[error("failed to encode an event ({kind} {subject})")]
    Encode {
        /// Its kind.
        kind: EventKind,
        /// Its subject.
        subject: String,
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An object drifted from what idp-lab applied, or was healed.
    Drift,
    /// A health verdict changed (a component's, or the lab's).
    Verdict,
    /// An SLO was evaluated: its burn rates and remaining budget.
    SloSample,
    /// A playbook ran, or was held back (rate limit, cool-down).
    PlaybookRun,
}

impl EventKind {
    /// `drift`, `verdict`, `slo-sample` or `playbook-run`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Drift => "drift",
            EventKind::Verdict => "verdict",
            EventKind::SloSample => "slo-sample",
            EventKind::PlaybookRun => "playbook-run",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened (kept to the millisecond).
    #[serde(with = "unix_ms")]
    pub at: SystemTime,
    /// What it is about.
    pub kind: EventKind,
    /// What it concerns: an object (`Deployment apps/web`), a component, an SLO, a playbook.
    pub subject: String,
    /// The details, as the producer shapes them.
    pub body: serde_json::Value,
}

impl Event {
    /// An event at `at`.
    pub fn new(at: SystemTime, kind: EventKind, subject: impl Into<String>, body: serde_json::Value) -> Event {
        Event { at, kind, subject: subject.into(), body }
    }
}

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this (before the newest event, or the clock at
    /// [`History::compact`]) are dropped.
    pub max_age: Duration,
    /// The most bytes of keys and values kept. sled's files take up to about three times
    /// as much: its log reclaims space a segment at a time (measured: 8 MiB of events
    /// in 24 MiB of files, steady while 100 MiB more were written).
    pub max_bytes: u64,
    /// The most events kept.
    pub max_events: u64,
}

impl Retention {
    /// The retention `[watchdog]` sets (`history_age`, `history_size`), with the default
    /// count limit.
    pub fn of(settings: &idp_core::settings::WatchdogSettings) -> Retention {
        Retention { max_age: settings.history_age, max_bytes: settings.history_bytes.bytes(), ..Retention::default() }
    }
}

impl Default for Retention {
    /// 7 days, 32 MiB, 250 000 events.
    fn default() -> Retention {
        Retention { max_age: Duration::from_secs(7 * 86_400), max_bytes: 32 << 20, max_events: 250_000 }
    }
}

/// What is in the store, kept in memory.
#[derive(Debug, Default)]
struct Tally {
    events: u64,
    bytes: u64,
    /// The newest event's time, in Unix milliseconds.
    newest: Option<u64>,
}

/// The watchdog's history, open for as long as this value lives.
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    retention: Retention,
    tally: Mutex<Tally>,
    closed: bool,
}

impl Drop for History {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.write_marker(true);
        }
    }
}

/// The tree of the [`Marker`], beside the events.
const META_TREE: &str = "meta";
/// The marker's key in it.
const MARKER_KEY: &str = "marker";

/// What the store held when it was last closed. sled recovers a log it cannot read to
/// its last good point, silently, as after a crash; after a clean close, any difference
/// between the marker and the events read back is damage.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    schema_version: u32,
    /// Whether the store was closed cleanly (false while it is open).
    clean: bool,
    /// How many events it held.
    events: u64,
    /// Its newest key, as `<unix ms>-<sequence>`.
    newest: Option<String>,
}

/// The envelope around every event, as in the state store.
#[derive(Serialize, Deserialize)]
struct Envelope {
    kind: String,
    schema_version: u32,
    data: serde_json::Value,
}

/// How long [`History::open`] waits for a lock that sled is still releasing.
const LOCK_WAIT: Duration = Duration::from_secs(2);

impl History {
    /// Opens (or creates) the history at `path`, a folder such as
    /// `<lab state dir>/watchdog.sled`, and applies `retention` at once.
    ///
    /// Fails with [`HistoryError::Locked`] while another process has it open and with
    /// [`HistoryError::Damaged`] when its files or any record in it do not read.
    pub fn open(path: &Path, retention: Retention) -> Result<History, HistoryError> {
        let had_files = std::fs::metadata(path.join("db")).is_ok_and(|m| m.len() > 0);
        // sled 0.34 panics on some files that are not its own (an index out of bounds on a
        // truncated segment): that is damage, not a crash, and its message is kept off
        // stderr (the error says it).
        let open_once = || {
            let opened =
                quiet_panics(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::open_checked(path, retention, had_files))));
            opened.unwrap_or_else(|panic| {
                Err(HistoryError::Damaged { path: path.to_path_buf(), reason: format!("sled failed reading it: {}", panic_text(&panic)) })
            })
        };
        // sled releases its file lock from a background thread once the last handle is
        // gone, a moment after a close (a daemon restarting, a store reopened): a lock
        // held that briefly is waited for, a longer one is another process's.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match open_once() {
                Err(HistoryError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_checked(path: &Path, retention: Retention, had_files: bool) -> Result<History, HistoryError> {
        let config = sled::Config::new().path(path).mode(sled::Mode::LowSpace).cache_capacity(CACHE_BYTES);
        let db = config.open().map_err(|e| open_error(path, e))?;
        let meta = db.open_tree(META_TREE).map_err(|e| open_error(path, e))?;
        // Marked closed until it is checked: a store refused here must stay refused.
        let mut history = History { path: path.to_path_buf(), db, meta, retention, tally: Mutex::new(Tally::default()), closed: true };
        history.recount()?;
        history.check_marker(had_files)?;
        history.enforce(None)?;
        history.write_marker(false)?;
        history.closed = false;
        Ok(history)
    }

    /// Writes everything to disk and marks the store closed cleanly (dropping it does the
    /// same, without telling whether it worked).
    pub fn close(mut self) -> Result<(), HistoryError> {
        let out = self.write_marker(true);
        self.closed = true;
        out
    }

    /// The store's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The retention it applies.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// How many events it holds.
    pub fn len(&self) -> u64 {
        self.lock().events
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of keys and values it holds (what [`Retention::max_bytes`] bounds).
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The size of sled's files.
    pub fn size_on_disk(&self) -> Result<u64, HistoryError> {
        self.db.size_on_disk().map_err(|source| self.store_error("measure", source))
    }

    /// Adds `event`, then drops the oldest events past the retention.
    pub fn record(&self, event: &Event) -> Result<(), HistoryError> {
        let ms = unix_ms::of(event.at).ok_or_else(|| HistoryError::Time { kind: event.kind, subject: event.subject.clone() })?;
        let data = serde_json::to_value(event).map_err(|source| HistoryError::Encode {
            kind: event.kind,
            subject: event.subject.clone(),
            source,
        })?;
        let envelope = Envelope { kind: RECORD_KIND.to_owned(), schema_version: SCHEMA_VERSION, data };
        let value = serde_json::to_vec(&envelope).map_err(|source| HistoryError::Encode {
            kind: event.kind,
            subject: event.subject.clone(),
            source,
        })?;
        if value.len() > MAX_EVENT_BYTES {
            return Err(HistoryError::TooLarge { kind: event.kind, subject: event.subject.clone(), size: value.len() });
        }
        let seq = self.db.generate_id().map_err(|source| self.store_error("write", source))?;
        let key = encode_key(ms, seq);
        let mut tally = self.lock();
        self.db.insert(key, value.as_slice()).map_err(|source| self.store_error("write", source))?;
        tally.events += 1;
        tally.bytes += (key.len() + value.len()) as u64;
        tally.newest = Some(tally.newest.map_or(ms, |n| n.max(ms)));
        let horizon = tally.newest;
        drop(tally);
        self.enforce(horizon)
    }

    /// The events since `t` (inclusive), oldest first: at most [`SINCE_LIMIT`], the newest
    /// ones when there are more.
    pub fn since(&self, t: SystemTime) -> Result<Vec<Event>, HistoryError> {
        self.since_limit(t, SINCE_LIMIT)
    }

    /// [`History::since`] with another limit.
    pub fn since_limit(&self, t: SystemTime, limit: usize) -> Result<Vec<Event>, HistoryError> {
        let from = encode_key(unix_ms::of(t).unwrap_or(0), 0);
        let mut out = Vec::new();
        for kv in self.db.range(from..).rev().take(limit) {
            let (k, v) = kv.map_err(|source| self.store_error("read", source))?;
            out.push(self.decode(&k, &v)?);
        }
        out.reverse();
        Ok(out)
    }

    /// The newest `n` events, oldest first.
    pub fn latest(&self, n: usize) -> Result<Vec<Event>, HistoryError> {
        self.since_limit(UNIX_EPOCH, n)
    }

    /// Drops what is older than [`Retention::max_age`] by the clock (and anything past the
    /// size limits), then writes everything to disk. The daemon calls it periodically.
    pub fn compact(&self) -> Result<(), HistoryError> {
        self.compact_at(SystemTime::now())
    }

    /// [`History::compact`] as if the clock said `now`.
    pub fn compact_at(&self, now: SystemTime) -> Result<(), HistoryError> {
        self.enforce(unix_ms::of(now))?;
        self.flush()
    }

    /// Writes everything recorded so far to disk (sled also does so every half second, and
    /// when the history is dropped).
    pub fn flush(&self) -> Result<(), HistoryError> {
        // One log holds every tree: this flushes the marker too.
        self.db.flush().map(drop).map_err(|source| self.store_error("flush", source))
    }

    /// Refuses a store whose events are not what it held when it was last closed cleanly,
    /// or whose files exist without a marker (sled read nothing back from them).
    fn check_marker(&self, had_files: bool) -> Result<(), HistoryError> {
        let damaged = |reason: String| HistoryError::Damaged { path: self.path.clone(), reason };
        let raw = self.meta.get(MARKER_KEY).map_err(|e| open_error(&self.path, e))?;
        let Some(raw) = raw else {
            return match had_files {
                true => Err(damaged("its files are there but no record in them reads back".to_owned())),
                false => Ok(()),
            };
        };
        let marker: Marker = serde_json::from_slice(&raw).map_err(|e| damaged(format!("its marker does not read: {e}")))?;
        if marker.schema_version > SCHEMA_VERSION {
            return Err(HistoryError::NewerSchema {
                path: self.path.clone(),
                key: MARKER_KEY.to_owned(),
                found: marker.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        if !marker.clean {
            // Not closed cleanly (the daemon was killed): what sled recovered is all there is.
            return Ok(());
        }
        let events = self.lock().events;
        let newest = self.newest_key()?;
        if marker.events != events || marker.newest != newest {
            return Err(damaged(format!(
                "it held {} events up to {} when it was closed, and {events} up to {} read back",
                marker.events,
                marker.newest.as_deref().unwrap_or("none"),
                newest.as_deref().unwrap_or("none")
            )));
        }
        Ok(())
    }

    /// Writes the marker and flushes.
    fn write_marker(&self, clean: bool) -> Result<(), HistoryError> {
        let marker = Marker { schema_version: SCHEMA_VERSION, clean, events: self.lock().events, newest: self.newest_key()? };
        let bytes = serde_json::to_vec(&marker).map_err(|e| HistoryError::Damaged { path: self.path.clone(), reason: e.to_string() })?;
        self.meta.insert(MARKER_KEY, bytes).map_err(|source| self.store_error("write", source))?;
        self.flush()
    }

    fn newest_key(&self) -> Result<Option<String>, HistoryError> {
        let last = self.db.last().map_err(|source| self.store_error("read", source))?;
        Ok(last.and_then(|(k, _)| decode_key(&k)).map(|(ms, seq)| format!("{ms}-{seq}")))
    }

    /// Counts the events and bytes, reading (and so checking) every record.
    fn recount(&self) -> Result<(), HistoryError> {
        let mut tally = Tally::default();
        for kv in self.db.iter() {
            let (k, v) = kv.map_err(|e| open_error(&self.path, e))?;
            let event = self.decode(&k, &v)?;
            tally.events += 1;
            tally.bytes += (k.len() + v.len()) as u64;
            let ms = unix_ms::of(event.at).unwrap_or(0);
            tally.newest = Some(tally.newest.map_or(ms, |n| n.max(ms)));
        }
        *self.lock() = tally;
        Ok(())
    }

    /// Drops the oldest events while the store is over a limit, or older than
    /// `max_age` before `now_ms` (the newest event's time, or the clock).
    fn enforce(&self, now_ms: Option<u64>) -> Result<(), HistoryError> {
        let max_age_ms = u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX);
        let horizon = now_ms.map(|now| now.saturating_sub(max_age_ms));
        let mut tally = self.lock();
        loop {
            let over = tally.events > self.retention.max_events || tally.bytes > self.retention.max_bytes;
            let Some((k, v)) = self.db.first().map_err(|source| self.store_error("read", source))? else {
                tally.events = 0;
                tally.bytes = 0;
                return Ok(());
            };
            let expired = horizon.is_some_and(|h| decode_key(&k).is_some_and(|(ms, _)| ms < h));
            if !over && !expired {
                return Ok(());
            }
            self.db.remove(&k).map_err(|source| self.store_error("trim", source))?;
            tally.events = tally.events.saturating_sub(1);
            tally.bytes = tally.bytes.saturating_sub((k.len() + v.len()) as u64);
        }
    }

    fn decode(&self, k: &[u8], v: &[u8]) -> Result<Event, HistoryError> {
        let key = decode_key(k).map_or_else(|| format!("{k:02x?}"), |(ms, seq)| format!("{ms}-{seq}"));
        let damaged = |reason: String| HistoryError::Damaged { path: self.path.clone(), reason: format!("event {key}: {reason}") };
        if decode_key(k).is_none() {
            return Err(damaged("the key is not a time and a sequence number".to_owned()));
        }
        let envelope: Envelope = serde_json::from_slice(v).map_err(|e| damaged(e.to_string()))?;
        if envelope.kind != RECORD_KIND {
            return Err(damaged(format!("a record of kind {:?}", envelope.kind)));
        }
        if envelope.schema_version > SCHEMA_VERSION {
            return Err(HistoryError::NewerSchema {
                path: self.path.clone(),
                key,
                found: envelope.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        serde_json::from_value(envelope.data).map_err(|e| damaged(e.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // The tally is plain numbers: one left by a panicking writer is still usable.
        self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn store_error(&self, action: &'static str, source: sled::Error) -> HistoryError {
        match source {
            sled::Error::Corruption { .. } => HistoryError::Damaged { path: self.path.clone(), reason: source.to_string() },
            source => HistoryError::Store { action, path: self.path.clone(), source },
        }
    }
}

/// The error of a failed open: locked, damaged or otherwise.
fn open_error(path: &Path, e: sled::Error) -> HistoryError {
    match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock") => {
            HistoryError::Locked { path: path.to_path_buf() }
        }
        sled::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof) => {
            HistoryError::Damaged { path: path.to_path_buf(), reason: io.to_string() }
        }
        e @ (sled::Error::Corruption { .. } | sled::Error::Unsupported(_) | sled::Error::ReportableBug(_)) => {
            HistoryError::Damaged { path: path.to_path_buf(), reason: e.to_string() }
        }
        source => HistoryError::Store { action: "open", path: path.to_path_buf(), source },
    }
}

thread_local! {
    /// Whether a panic on this thread is caught and reported by [`History::open`].
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the panic message of this thread suppressed: a hook installed once
/// passes every other panic (other threads, or this one outside `f`) to the previous hook.
fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = f();
    QUIET.with(|q| q.set(false));
    out
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

fn encode_key(ms: u64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&ms.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn decode_key(k: &[u8]) -> Option<(u64, u64)> {
    let ms = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(k.get(8..16)?.try_into().ok()?);
    (k.len() == 16).then_some((ms, seq))
}

/// `SystemTime` as Unix milliseconds, in JSON and in keys.
mod unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub(super) fn of(t: SystemTime) -> Option<u64> {
        t.duration_since(UNIX_EPOCH).ok().and_then(|d| u64::try_from(d.as_millis()).ok())
    }

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(of(*t).ok_or_else(|| serde::ser::Error::custom("a time before the Unix epoch"))?)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(UNIX_EPOCH + Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_then_sequence() {
        let a = encode_key(1_000, 5);
        let b = encode_key(1_000, 6);
        let c = encode_key(1_001, 0);
        assert!(a < b && b < c);
        assert_eq!(decode_key(&c), Some((1_001, 0)));
        assert_eq!(decode_key(b"short"), None);
        assert_eq!(decode_key(&[0u8; 17]), None);
    }

    #[test]
    fn the_configured_retention_is_the_default_one_by_default() -> Result<(), Box<dyn std::error::Error>> {
        let config = idp_core::config::resolve(&[&idp_core::config::defaults()])?;
        let settings = idp_core::settings::WatchdogSettings::from_config(&config.watchdog)?;
        assert_eq!(Retention::of(&settings), Retention::default(), "[watchdog] history_age and history_size match");
        Ok(())
    }

    #[test]
    fn events_round_trip_as_json_with_millisecond_times() -> Result<(), serde_json::Error> {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let e = Event::new(at, EventKind::SloSample, "slo monitoring/x", serde_json::json!({"burn": 1.5}));
        let json = serde_json::to_value(&e)?;
        assert_eq!(json["at"], 1_700_000_000_123u64);
        assert_eq!(json["kind"], "slo-sample");
        assert_eq!(serde_json::from_value::<Event>(json)?, e);
        Ok(())
    }
}
