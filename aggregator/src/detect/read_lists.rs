//! Lists of credential reads keyed by credential or by identity, each read
//! forgotten with its token: a read of a token past its `exp` (plus
//! [`READ_EXPIRY_GRACE`]) can join no request any more, since the API server
//! refuses the token (401, and that audit event names no user).
//!
//! Each list is an entry of a [`Bounded`] map (count and age limits as every
//! map); reads that carry an expiry also queue `(exp + grace, key)` in a
//! min-heap, popped as the map's clock passes it: O(log n) per read, no scan.
//! Queue items of keys already gone are skipped when due; the queue is
//! rebuilt from the map when it outgrows it (amortized O(1) per read). Keys
//! are `Arc<str>`, shared by the map and its queue items (no copy).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::bounded::{Bounded, Limits};
use super::limits::READ_EXPIRY_GRACE;
use super::sightings::ReadSighting;

/// Bound on reads kept per key.
const READS_PER_KEY: usize = 64;

const GRACE_MS: i64 = READ_EXPIRY_GRACE.num_milliseconds();

impl ReadSighting {
    /// When this read stops mattering (ms): the token's `exp` plus the grace.
    pub fn expires_ms(&self) -> Option<i64> {
        self.expires
            .map(|e| e.timestamp_millis().saturating_add(GRACE_MS))
    }

    /// Whether the token read has expired (with the grace) at `now_ms`.
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.expires_ms().is_some_and(|at| at <= now_ms)
    }
}

/// Reads by key, bounded, expiring with their tokens.
#[derive(Debug)]
pub struct ReadLists {
    pub map: Bounded<Arc<str>, Vec<Arc<ReadSighting>>>,
    queue: BinaryHeap<Reverse<(i64, Arc<str>)>>,
    /// The queue's length after the last rebuild: the next rebuild waits
    /// until it has doubled (a key can hold many expiries, so a rebuilt
    /// queue can be longer than twice the map; without this every add
    /// rebuilt it, O(map) per read, and the writer stalled at the cap).
    rebuilt_len: usize,
    rebuilds: u64,
}

impl ReadLists {
    pub fn new(l: Limits) -> Self {
        Self {
            map: Bounded::new(l),
            queue: BinaryHeap::new(),
            rebuilt_len: 0,
            rebuilds: 0,
        }
    }

    fn now_ms(&self) -> Option<i64> {
        self.map.now().map(|t| t.timestamp_millis())
    }

    /// The reads under `key`.
    pub fn get(&self, key: &str) -> &[Arc<ReadSighting>] {
        self.map.get(key).map_or(&[], Vec::as_slice)
    }

    /// Adds `s` under `key` (replacing the same process's read of the same
    /// path; the oldest first past [`READS_PER_KEY`]), dropping the list's
    /// reads of expired tokens.
    pub fn add(&mut self, key: &str, s: Arc<ReadSighting>) {
        let now = self.now_ms().unwrap_or(i64::MIN);
        let key: Arc<str> = match self.map.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        let v = self.map.entry(key.clone()).or_default();
        let queued = v.iter().any(|r| r.expires == s.expires);
        let before = v.len();
        v.retain(|r| !r.expired_at(now));
        let expired = (before - v.len()) as u64;
        if let Some(old) = v
            .iter_mut()
            .find(|o| o.node == s.node && o.tgid == s.tgid && o.path == s.path)
        {
            *old = s.clone();
        } else {
            if v.len() >= READS_PER_KEY {
                v.remove(0);
            }
            v.push(s.clone());
        }
        self.map.count_expired(expired);
        if let Some(at) = s.expires_ms().filter(|_| !queued) {
            self.queue.push(Reverse((at, key)));
            if self.queue.len() > 2 * self.map.len().max(self.rebuilt_len) + 1024 {
                self.rebuild();
            }
        }
    }

    /// One queue item per key and expiry of its reads.
    fn rebuild(&mut self) {
        let mut items = Vec::new();
        for (k, v) in self.map.iter() {
            let mut ats: Vec<i64> = v.iter().filter_map(|r| r.expires_ms()).collect();
            ats.sort_unstable();
            ats.dedup();
            items.extend(ats.into_iter().map(|at| Reverse((at, k.clone()))));
        }
        self.queue = BinaryHeap::from(items);
        self.rebuilt_len = self.queue.len();
        self.rebuilds += 1;
    }

    /// Forgets reads of tokens expired by the map's clock; hands `gone` each
    /// key left without reads (removed, counted as expired) with the time
    /// (ms) its last reads stopped mattering (their `exp` plus the grace).
    pub fn expire(&mut self, mut gone: impl FnMut(&str, i64)) {
        let Some(now) = self.now_ms() else { return };
        while self.queue.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((at, key))) = self.queue.pop() else {
                break;
            };
            let Some(v) = self.map.peek_mut(&*key) else {
                continue; // evicted, aged out or expired already
            };
            let before = v.len();
            // Reads without an `exp` under the same key stay.
            v.retain(|r| !r.expired_at(now));
            let n = (before - v.len()) as u64;
            if v.is_empty() {
                self.map.remove(&*key);
                self.map.count_expired(1);
                gone(&key, at);
            } else if n > 0 && v.capacity() > 2 * v.len() {
                v.shrink_to_fit();
            }
        }
    }

    /// Queue items held (for tests of the queue's bound).
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
#[path = "read_lists_tests.rs"]
mod bookkeeping_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};

    /// Shared with `read_lists_tests.rs`.
    pub(super) fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    pub(super) fn read(tgid: u32, exp: Option<i64>) -> Arc<ReadSighting> {
        Arc::new(ReadSighting {
            node: "n1".into(),
            tgid,
            comm: None,
            exe: None,
            container_id: None,
            pod_uid: None,
            pod: None,
            path: "/token".into(),
            time: t(0),
            observation_id: format!("o{tgid}"),
            expires: exp.map(t),
        })
    }

    fn lists(max: usize) -> ReadLists {
        ReadLists::new(Limits::new(max, Some(Duration::days(7))))
    }

    fn advance(l: &mut ReadLists, s: i64) -> Vec<String> {
        let mut gone = Vec::new();
        l.map.advance(t(s));
        l.expire(|k, _| gone.push(k.to_owned()));
        gone
    }

    #[test]
    fn a_queue_longer_than_twice_the_map_is_not_rebuilt_on_every_read() {
        // 100 keys × 64 reads, each with its own expiry: a rebuilt queue
        // holds 6,400 items, more than twice the map plus 1,024.
        let mut l = lists(100);
        let mut tgid = 0;
        for k in 0..100 {
            for e in 0..64 {
                tgid += 1;
                l.add(&format!("k{k}"), read(tgid, Some(10_000 + k * 64 + e)));
            }
        }
        let before = l.rebuilds;
        assert!(before >= 1, "filling the queue rebuilt it");
        for e in 0..1000 {
            tgid += 1;
            l.add(&format!("k{}", e % 100), read(tgid, Some(20_000 + e)));
        }
        assert!(
            l.rebuilds - before <= 1,
            "{} rebuilds for 1,000 reads",
            l.rebuilds - before
        );
    }

    #[test]
    fn a_read_goes_at_exp_plus_the_grace_not_before() {
        let mut l = lists(10);
        let grace = READ_EXPIRY_GRACE.num_seconds();
        advance(&mut l, 0);
        l.add("JTI=a", read(1, Some(3600)));
        l.add("JTI=b", read(2, Some(7200)));
        l.add("sha256:legacy", read(3, None));
        assert!(advance(&mut l, 3600 + grace - 1).is_empty());
        assert_eq!(l.get("JTI=a").len(), 1, "inside the grace");
        assert_eq!(advance(&mut l, 3600 + grace), ["JTI=a"]);
        assert!(l.get("JTI=a").is_empty() && l.get("JTI=b").len() == 1);
        assert_eq!(advance(&mut l, 100_000), ["JTI=b"]);
        assert_eq!(
            l.get("sha256:legacy").len(),
            1,
            "no exp: the age limit only"
        );
        assert_eq!(l.map.take_dropped().expired, 2);
    }

    #[test]
    fn a_list_keeps_its_reads_without_exp_and_drops_expired_ones_when_touched() {
        let mut l = lists(10);
        advance(&mut l, 0);
        // One identity: a token that expires, then a legacy token read.
        l.add("user", read(1, Some(60)));
        l.add("user", read(2, None));
        let g = READ_EXPIRY_GRACE.num_seconds();
        assert!(advance(&mut l, 60 + g).is_empty(), "the list keeps a read");
        assert_eq!(l.get("user").len(), 1);
        assert_eq!(l.get("user")[0].tgid, 2);
        assert_eq!(l.map.take_dropped().expired, 0, "the list is still there");
    }

    #[test]
    fn a_planted_token_claiming_a_victims_jti_cannot_expire_the_victims_read() {
        // Claims are not verified on the node: a process may read a file it
        // wrote with the victim's JTI and an `exp` long past (or absurd).
        let mut l = lists(10);
        advance(&mut l, 0);
        l.add("JTI=victim", read(1, Some(86_400)));
        l.add("JTI=victim", read(66, Some(-1_700_000_000)));
        l.add("JTI=victim", read(67, Some(8_000_000_000_000))); // year ~255,000
        assert!(advance(&mut l, 10).is_empty());
        let left: Vec<u32> = l.get("JTI=victim").iter().map(|r| r.tgid).collect();
        assert_eq!(left, [1, 67], "only the planted read past its exp goes");
        // An `exp` chrono cannot represent is no expiry (the age limit).
        let mut r = (*read(68, None)).clone();
        r.expires = DateTime::from_timestamp(i64::MAX, 0);
        assert!(r.expires.is_none() && !r.expired_at(i64::MAX));
    }

    #[test]
    fn the_queue_stays_bounded_and_evicted_keys_are_skipped() {
        let mut l = lists(4);
        advance(&mut l, 0);
        // One process re-reading a rotated token 10,000 times: one list
        // entry, the queue rebuilt rather than grown.
        for i in 0..10_000 {
            l.add("user", read(1, Some(1_000 + i)));
            assert!(l.queued() <= 2 * l.map.len() + 1025, "{}", l.queued());
        }
        assert_eq!(l.get("user").len(), 1);
        // Keys evicted by the cap leave queue items behind: skipped when due.
        for i in 0..20 {
            l.add(&format!("JTI={i}"), read(2, Some(500)));
        }
        assert_eq!(l.map.len(), 4);
        let gone = advance(&mut l, 500 + READ_EXPIRY_GRACE.num_seconds());
        assert_eq!(gone.len(), 4, "only the keys still held: {gone:?}");
        assert_eq!(l.map.take_dropped().expired, 4);
    }
}
