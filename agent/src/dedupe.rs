//! One report per process and file per interval.
//!
//! client-go re-reads its token file every minute, a shell loop may read a
//! kubeconfig thousands of times: the first read of an interval is reported at
//! once (so detection is prompt); later reads of the same file by the same
//! process in that interval are folded and reported together, with their
//! count, when the interval ends ([`Deduper::due`]) or with the next read
//! after it.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Most (process, file) pairs tracked at once; beyond it, reads are reported
/// one by one rather than dropped.
pub const MAX_TRACKED: usize = 16_384;

/// What to do with one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Report now; `reads` counts this read plus any folded since the last report.
    Report { reads: u32 },
    /// Folded into the report due at the end of the interval.
    Folded,
}

#[derive(Debug)]
struct Entry<T> {
    interval_start: DateTime<Utc>,
    pending: u32,
    last_seen: DateTime<Utc>,
    template: Option<T>,
}

/// A report whose interval has ended with folded reads.
#[derive(Debug)]
pub struct Due<T> {
    pub template: T,
    pub reads: u32,
    /// Time of the last folded read.
    pub last_seen: DateTime<Utc>,
}

/// Folds repeated events per key; `T` is the report to repeat.
#[derive(Debug)]
pub struct Deduper<K, T> {
    interval: chrono::Duration,
    entries: HashMap<K, Entry<T>>,
}

impl<K: Hash + Eq + Clone, T: Clone> Deduper<K, T> {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX),
            entries: HashMap::new(),
        }
    }

    /// Number of tracked keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides about one read at `now`.
    pub fn on_event(&mut self, key: &K, now: DateTime<Utc>) -> Decision {
        if let Some(e) = self.entries.get_mut(key) {
            if now < e.interval_start + self.interval {
                e.pending = e.pending.saturating_add(1);
                e.last_seen = now;
                return Decision::Folded;
            }
            let reads = e.pending.saturating_add(1);
            e.interval_start = now;
            e.pending = 0;
            e.last_seen = now;
            return Decision::Report { reads };
        }
        if self.entries.len() >= MAX_TRACKED {
            self.expire(now);
            if self.entries.len() >= MAX_TRACKED {
                return Decision::Report { reads: 1 };
            }
        }
        self.entries.insert(
            key.clone(),
            Entry {
                interval_start: now,
                pending: 0,
                last_seen: now,
                template: None,
            },
        );
        Decision::Report { reads: 1 }
    }

    /// Stores the report a key's folded reads will repeat.
    pub fn remember(&mut self, key: &K, template: T) {
        if let Some(e) = self.entries.get_mut(key) {
            e.template = Some(template);
        }
    }

    /// Reports whose interval ended with folded reads; their next interval
    /// starts now. Idle keys are forgotten after two intervals.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Due<T>> {
        let mut out = Vec::new();
        for e in self.entries.values_mut() {
            if e.pending > 0 && now >= e.interval_start + self.interval {
                if let Some(t) = &e.template {
                    out.push(Due {
                        template: t.clone(),
                        reads: e.pending,
                        last_seen: e.last_seen,
                    });
                }
                e.pending = 0;
                e.interval_start = now;
            }
        }
        self.expire(now);
        out
    }

    fn expire(&mut self, now: DateTime<Utc>) {
        let keep = self.interval * 2;
        self.entries
            .retain(|_, e| e.pending > 0 || now < e.interval_start + keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn first_read_reports_then_folds_until_interval_end() {
        let mut d: Deduper<(u32, &str), &str> = Deduper::new(Duration::from_secs(60));
        let k = (7, "/token");
        assert_eq!(d.on_event(&k, t(0)), Decision::Report { reads: 1 });
        d.remember(&k, "report");
        for s in 1..=5 {
            assert_eq!(d.on_event(&k, t(s)), Decision::Folded);
        }
        // Another process reading the same file is reported on its own.
        assert_eq!(
            d.on_event(&(8, "/token"), t(3)),
            Decision::Report { reads: 1 }
        );
        assert!(d.due(t(59)).is_empty());
        let due = d.due(t(60));
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].template, due[0].reads, due[0].last_seen),
            ("report", 5, t(5))
        );
        assert!(d.due(t(61)).is_empty());
        // Folded then read again after the interval, before a flush: counted together.
        assert_eq!(d.on_event(&k, t(70)), Decision::Folded);
        assert_eq!(d.on_event(&k, t(121)), Decision::Report { reads: 2 });
        // Idle keys are forgotten.
        d.due(t(1000));
        assert!(d.is_empty());
    }
}
