//! One object's heal history: when the next heal may run (exponential backoff, a rate
//! cap), and which fields another manager keeps setting back (contested). Pure: the
//! caller passes the time in, so tests step it.
//!
//! * **Backoff.** The first heal runs at once. While earlier heals are in the window, the
//!   next waits `backoff × 2^(n−1)` after the last one (capped at `backoff_max`), `n`
//!   being the heals in the window.
//! * **Rate cap.** At most `heal_limit` heals per `heal_window`; then the object waits
//!   until the oldest leaves the window.
//! * **Contested.** A drift seen after a successful heal is a *revert* of that heal by the
//!   manager of each drifted field (one per heal, however many watch events show it). A
//!   (field, manager) that reverts `contested_after` heals within `contested_window` is
//!   contested: healing stops, and the drift is only reported, until the desired object
//!   changes (the caller then makes a new ledger).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::report::Contest;

/// The limits a ledger keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The wait after the first heal in the window; it doubles per heal.
    pub backoff: Duration,
    /// The longest wait between heals.
    pub backoff_max: Duration,
    /// Heals per window.
    pub heal_limit: usize,
    /// The window of the rate cap.
    pub heal_window: Duration,
    /// Reverts by one manager of one field that make it contested.
    pub contested_after: usize,
    /// The window reverts are counted in.
    pub contested_window: Duration,
}

/// When the next heal may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Now.
    Now,
    /// After a backoff, at this time.
    At(Instant),
    /// The rate cap is reached; not before this time.
    Capped(Instant),
    /// Never: a field is contested.
    Contested,
}

/// One object's heal history; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Heal attempts (successful or not) in the heal window, oldest first.
    attempts: VecDeque<Instant>,
    /// The last successful heal.
    last_heal: Option<Instant>,
    /// Whether a drift was already counted as a revert of the last heal.
    reverted: bool,
    /// Revert times per (path, manager), oldest first.
    reverts: BTreeMap<(String, String), VecDeque<Instant>>,
    /// Contested (path, manager) → reverts counted.
    contested: BTreeMap<(String, String), usize>,
}

impl Ledger {
    /// Notes a drift seen at `now` with its fields' (path, manager); `ours` is idp-lab's
    /// manager, never a reverter. Returns whether a field became contested with it.
    pub fn drift_seen<'a>(
        &mut self,
        now: Instant,
        fields: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        ours: &str,
        limits: &Limits,
    ) -> bool {
        let Some(healed) = self.last_heal else { return false };
        if self.reverted || now.saturating_duration_since(healed) > limits.contested_window {
            return false;
        }
        self.reverted = true;
        let mut became = false;
        let mut counted = std::collections::BTreeSet::new();
        for (path, manager) in fields {
            let Some(manager) = manager.filter(|m| *m != ours) else { continue };
            let key = (path.to_owned(), manager.to_owned());
            if !counted.insert(key.clone()) {
                continue;
            }
            let times = self.reverts.entry(key.clone()).or_default();
            times.push_back(now);
            while times.front().is_some_and(|t| now.saturating_duration_since(*t) > limits.contested_window) {
                times.pop_front();
            }
            let count = times.len();
            if count >= limits.contested_after.max(1) {
                if !self.contested.contains_key(&key) {
                    became = true;
                }
                self.contested.insert(key, count);
            }
        }
        became
    }

    /// When the next heal may run, at `now`.
    pub fn next(&mut self, now: Instant, limits: &Limits) -> Next {
        if !self.contested.is_empty() {
            return Next::Contested;
        }
        self.expire(now, limits);
        let (Some(first), Some(last)) = (self.attempts.front(), self.attempts.back()) else { return Next::Now };
        if self.attempts.len() >= limits.heal_limit.max(1) {
            return Next::Capped(*first + limits.heal_window);
        }
        let doublings = u32::try_from(self.attempts.len() - 1).unwrap_or(u32::MAX).min(30);
        let wait = limits.backoff.saturating_mul(1 << doublings).min(limits.backoff_max);
        let at = *last + wait;
        if at <= now { Next::Now } else { Next::At(at) }
    }

    /// Notes a heal attempt at `now`: `ok` when the apply succeeded.
    pub fn attempted(&mut self, now: Instant, ok: bool, limits: &Limits) {
        self.expire(now, limits);
        self.attempts.push_back(now);
        if ok {
            self.last_heal = Some(now);
            self.reverted = false;
        }
    }

    /// Heal attempts in the window at `now`.
    pub fn heals(&mut self, now: Instant, limits: &Limits) -> usize {
        self.expire(now, limits);
        self.attempts.len()
    }

    /// The contested fields, by path and manager.
    pub fn contests(&self) -> Vec<Contest> {
        self.contested
            .iter()
            .map(|((path, manager), reverts)| Contest { path: path.clone(), manager: manager.clone(), reverts: *reverts })
            .collect()
    }

    /// Whether a field is contested.
    pub fn is_contested(&self) -> bool {
        !self.contested.is_empty()
    }

    fn expire(&mut self, now: Instant, limits: &Limits) {
        while self.attempts.front().is_some_and(|t| now.saturating_duration_since(*t) >= limits.heal_window) {
            self.attempts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        backoff: Duration::from_secs(1),
        backoff_max: Duration::from_secs(5),
        heal_limit: 5,
        heal_window: Duration::from_secs(600),
        contested_after: 3,
        contested_window: Duration::from_secs(600),
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn heals_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        assert_eq!(ledger.next(t0, &LIMITS), Next::Now, "the first heal runs at once");
        ledger.attempted(t0, true, &LIMITS);
        assert_eq!(ledger.next(t0, &LIMITS), Next::At(t0 + secs(1)));
        assert_eq!(ledger.next(t0 + secs(1), &LIMITS), Next::Now);
        ledger.attempted(t0 + secs(1), true, &LIMITS);
        assert_eq!(ledger.next(t0 + secs(1), &LIMITS), Next::At(t0 + secs(3)), "2 s after the second");
        ledger.attempted(t0 + secs(3), false, &LIMITS);
        assert_eq!(ledger.next(t0 + secs(3), &LIMITS), Next::At(t0 + secs(7)), "a failed attempt counts: 4 s");
        ledger.attempted(t0 + secs(7), true, &LIMITS);
        assert_eq!(ledger.next(t0 + secs(7), &LIMITS), Next::At(t0 + secs(12)), "8 s, capped at 5 s");
        ledger.attempted(t0 + secs(12), true, &LIMITS);
        assert_eq!(ledger.heals(t0 + secs(12), &LIMITS), 5);
        assert_eq!(ledger.next(t0 + secs(20), &LIMITS), Next::Capped(t0 + secs(600)), "5 heals in 10 min");
        assert_eq!(ledger.next(t0 + secs(600), &LIMITS), Next::Now, "the oldest left the window, the last is long past");
        assert_eq!(ledger.heals(t0 + secs(600), &LIMITS), 4);
        assert_eq!(ledger.heals(t0 + secs(1300), &LIMITS), 0);
    }

    #[test]
    fn reverts_of_heals_make_a_field_contested() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        let fields = [("data.mode", Some("fighter")), ("data.other", Some("idp-lab")), ("data.gone", None)];
        assert!(!ledger.drift_seen(t0, fields, "idp-lab", &LIMITS), "a drift before any heal is no revert");
        for round in 1..=3u64 {
            let t = t0 + secs(10 * round);
            ledger.attempted(t, true, &LIMITS);
            let became = ledger.drift_seen(t + secs(1), fields, "idp-lab", &LIMITS);
            assert!(!ledger.drift_seen(t + secs(2), fields, "idp-lab", &LIMITS), "one revert per heal");
            assert_eq!(became, round == 3, "round {round}");
            assert_eq!(ledger.is_contested(), round == 3);
        }
        assert_eq!(ledger.contests(), vec![Contest { path: "data.mode".into(), manager: "fighter".into(), reverts: 3 }]);
        assert_eq!(ledger.next(t0 + secs(100), &LIMITS), Next::Contested, "healing stops");
        assert_eq!(ledger.heals(t0 + secs(100), &LIMITS), 3);
    }

    #[test]
    fn reverts_outside_the_window_or_after_failed_heals_do_not_count() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        let fields = [("spec.replicas", Some("hpa"))];
        ledger.attempted(t0, true, &LIMITS);
        assert!(!ledger.drift_seen(t0 + secs(601), fields, "idp-lab", &LIMITS), "too long after the heal");
        ledger.attempted(t0 + secs(700), false, &LIMITS);
        assert!(!ledger.drift_seen(t0 + secs(701), fields, "idp-lab", &LIMITS), "the failed heal is not reverted");
        // Two reverts, then the first leaves the window before the third.
        for t in [1000, 1010] {
            ledger.attempted(t0 + secs(t), true, &LIMITS);
            ledger.drift_seen(t0 + secs(t + 1), fields, "idp-lab", &LIMITS);
        }
        ledger.attempted(t0 + secs(1700), true, &LIMITS);
        assert!(!ledger.drift_seen(t0 + secs(1701), fields, "idp-lab", &LIMITS), "the first revert expired");
        assert!(!ledger.is_contested());
        // A contested_after of 0 means 1.
        let mut eager = Ledger::default();
        eager.attempted(t0, true, &LIMITS);
        assert!(eager.drift_seen(t0, fields, "idp-lab", &Limits { contested_after: 0, ..LIMITS }));
    }

    #[test]
    fn a_zero_heal_limit_still_allows_one() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        let limits = Limits { heal_limit: 0, ..LIMITS };
        assert_eq!(ledger.next(t0, &limits), Next::Now);
        ledger.attempted(t0, true, &limits);
        assert_eq!(ledger.next(t0, &limits), Next::Capped(t0 + secs(600)));
    }
}
