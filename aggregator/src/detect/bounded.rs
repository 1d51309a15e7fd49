//! A map bounded by count and by age, for every piece of detection state.
//!
//! [`Bounded`] keeps its entries in the order they were last touched (a
//! [`LinkedHashMap`]: a hash map threaded on a doubly linked list). Touching
//! an entry moves it to the back, so the front is always the entry unused for
//! longest. That gives both bounds in amortized O(1) per operation, whatever
//! the number of entries:
//!
//! - **count**: inserting a new key into a full map first evicts the front
//!   entry (the least recently used) and counts it;
//! - **age**: the map has a clock ([`Bounded::advance`], the newest event time
//!   seen); entries at the front last touched more than `max_age` before it
//!   are expired, and counted, until the front is young enough. Each entry is
//!   expired at most once, so the cost is paid once per insertion.
//!
//! Nothing ever scans the whole map on the hot path. The API follows
//! `HashMap`'s (`get`, `get_mut`, `insert`, `entry(..).or_default()`,
//! `remove`, `iter`, `len`), with one difference: `get` only reads, while
//! `get_mut`, `insert` and `entry` *touch* the entry (move it to the back and
//! stamp it with the clock). Keys are hashed with std's SipHash
//! (`RandomState`): keys come from audit events and agents.

use std::borrow::Borrow;
use std::hash::{Hash, RandomState};

use chrono::{DateTime, Duration, Utc};
use hashlink::LinkedHashMap;

/// The bounds of one map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many entries (at least 1); the least recently used goes first.
    pub max_entries: usize,
    /// Entries not touched for this long (by the map's clock) are forgotten;
    /// `None`: no age limit.
    pub max_age: Option<Duration>,
}

impl Limits {
    pub const fn new(max_entries: usize, max_age: Option<Duration>) -> Self {
        Self {
            max_entries,
            max_age,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot<V> {
    value: V,
    /// Clock (ms) when last touched.
    seen_ms: i64,
}

/// Entries removed by the bounds since the last [`Bounded::take_dropped`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Evicted because the map was full.
    pub cap: u64,
    /// Expired because unused for longer than the age limit.
    pub age: u64,
    /// Removed because what it describes can no longer matter (a read of a
    /// token past its `exp`), before its age limit.
    pub expired: u64,
}

/// A hash map bounded by count and age; see the module documentation.
#[derive(Debug)]
pub struct Bounded<K, V> {
    map: LinkedHashMap<K, Slot<V>, RandomState>,
    limits: Limits,
    now_ms: i64,
    dropped: Dropped,
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    pub fn new(limits: Limits) -> Self {
        Self {
            map: LinkedHashMap::with_hasher(RandomState::new()),
            limits: Limits {
                max_entries: limits.max_entries.max(1),
                ..limits
            },
            now_ms: i64::MIN,
            dropped: Dropped::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// New bounds (a reloaded policy): entries past the new count go now
    /// (least recently used first, counted under `cap`), entries past the new
    /// age at the next [`Bounded::advance`].
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = Limits {
            max_entries: limits.max_entries.max(1),
            ..limits
        };
        while self.map.len() > self.limits.max_entries {
            if self.map.pop_front().is_none() {
                break;
            }
            self.dropped.cap += 1;
        }
    }

    /// Moves the clock forward to `t` (never back) and expires what is too old.
    pub fn advance(&mut self, t: DateTime<Utc>) {
        self.advance_ms(t.timestamp_millis());
    }

    /// [`Bounded::advance`] in milliseconds since the epoch.
    pub fn advance_ms(&mut self, t_ms: i64) {
        self.advance_ms_with(t_ms, |_, _| {});
    }

    /// [`Bounded::advance`], handing each expired entry to `gone`.
    pub fn advance_with(&mut self, t: DateTime<Utc>, gone: impl FnMut(K, V)) {
        self.advance_ms_with(t.timestamp_millis(), gone);
    }

    fn advance_ms_with(&mut self, t_ms: i64, mut gone: impl FnMut(K, V)) {
        if t_ms > self.now_ms {
            self.now_ms = t_ms;
        }
        let Some(age) = self.limits.max_age else {
            return;
        };
        let oldest = self.now_ms.saturating_sub(age.num_milliseconds());
        while self.map.front().is_some_and(|(_, s)| s.seen_ms < oldest) {
            if let Some((k, s)) = self.map.pop_front() {
                gone(k, s.value);
            }
            self.dropped.age += 1;
        }
    }

    /// Makes room for one new key now (evicting the least recently used
    /// entries, counted, and handing each to `gone`), so that inserting it
    /// next evicts nothing else.
    pub fn make_room_with(&mut self, mut gone: impl FnMut(K, V)) {
        while self.map.len() >= self.limits.max_entries {
            let Some((k, s)) = self.map.pop_front() else {
                break;
            };
            self.dropped.cap += 1;
            gone(k, s.value);
        }
    }

    /// The least recently touched entry, to change in place (not touched).
    pub fn front_mut(&mut self) -> Option<(&K, &mut V)> {
        self.map.iter_mut().next().map(|(k, s)| (k, &mut s.value))
    }

    /// Removes the least recently touched entry (not counted as dropped).
    pub fn pop_front(&mut self) -> Option<(K, V)> {
        self.map.pop_front().map(|(k, s)| (k, s.value))
    }

    /// Counts `n` parts of entries dropped by a bound the owner keeps (e.g.
    /// items inside the values), under `cap`.
    pub fn count_cap_dropped(&mut self, n: u64) {
        self.dropped.cap += n;
    }

    /// Counts `n` entries (or parts of entries) the owner removed because
    /// they expired, under `expired`.
    pub fn count_expired(&mut self, n: u64) {
        self.dropped.expired += n;
    }

    /// A mutable reference to an entry, without touching it (its place in
    /// the last-used order and its age stay as they were).
    pub fn peek_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(k).map(|s| &mut s.value)
    }

    /// The map's clock (the newest time it was advanced to).
    pub fn now(&self) -> Option<DateTime<Utc>> {
        (self.now_ms != i64::MIN)
            .then(|| DateTime::from_timestamp_millis(self.now_ms))
            .flatten()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Reads an entry without touching it.
    pub fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(k).map(|s| &s.value)
    }

    /// The stored key and value of `k`, without touching it.
    pub fn get_key_value<Q>(&self, k: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_key_value(k).map(|(k, s)| (k, &s.value))
    }

    pub fn contains_key<Q>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(k)
    }

    /// A mutable reference to an entry; touches it.
    pub fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.now_ms;
        self.map.to_back(k).map(|s| {
            s.seen_ms = now;
            &mut s.value
        })
    }

    /// Marks an entry used now; returns whether it exists.
    pub fn touch<Q>(&mut self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_mut(k).is_some()
    }

    /// Inserts or replaces (touching it); evicts the least recently used entry
    /// first when a new key would exceed the count limit.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        if !self.map.contains_key(&k) {
            self.make_room();
        }
        let slot = Slot {
            value: v,
            seen_ms: self.now_ms,
        };
        self.map.insert(k, slot).map(|s| s.value)
    }

    /// The entry for `k`, to read or insert (touches it).
    pub fn entry(&mut self, k: K) -> Entry<'_, K, V> {
        Entry { map: self, key: k }
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(k).map(|s| s.value)
    }

    /// Entries from the least to the most recently touched.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|s| &s.value)
    }

    /// Keeps the entries `f` accepts (a full pass: not for the hot path).
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(|k, s| f(k, &mut s.value));
    }

    /// What the bounds removed since the last call.
    pub fn take_dropped(&mut self) -> Dropped {
        std::mem::take(&mut self.dropped)
    }

    fn make_room(&mut self) {
        while self.map.len() >= self.limits.max_entries {
            if self.map.pop_front().is_none() {
                break;
            }
            self.dropped.cap += 1;
        }
    }
}

impl<K, Q, V> std::ops::Index<&Q> for Bounded<K, V>
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    type Output = V;

    /// Reads an entry without touching it; panics if absent, like `HashMap`.
    fn index(&self, k: &Q) -> &V {
        self.get(k).expect("key present in Bounded map")
    }
}

/// An entry of a [`Bounded`] map, as `HashMap`'s `entry` gives.
pub struct Entry<'a, K, V> {
    map: &'a mut Bounded<K, V>,
    key: K,
}

impl<'a, K: Hash + Eq, V> Entry<'a, K, V> {
    /// The value, inserting `f()` when absent; touches it either way.
    pub fn or_insert_with(self, f: impl FnOnce() -> V) -> &'a mut V {
        let Entry { map, key } = self;
        if !map.map.contains_key(&key) {
            map.make_room();
        }
        let now = map.now_ms;
        let slot = map.map.entry(key).or_insert_with(|| Slot {
            value: f(),
            seen_ms: now,
        });
        slot.seen_ms = now;
        &mut slot.value
    }

    pub fn or_insert(self, v: V) -> &'a mut V {
        self.or_insert_with(|| v)
    }

    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn count_limit_evicts_least_recently_used_and_counts_it() {
        let mut m = Bounded::new(Limits::new(3, None));
        m.advance(t(0));
        for k in ["a", "b", "c"] {
            m.insert(k, 1);
        }
        assert!(m.get_mut("a").is_some()); // a is now the most recent
        m.insert("d", 1);
        assert_eq!(m.len(), 3);
        assert!(!m.contains_key("b"), "b was the least recently used");
        assert!(m.contains_key("a") && m.contains_key("c") && m.contains_key("d"));
        *m.entry("e").or_default() += 5;
        assert!(!m.contains_key("c"));
        assert_eq!(m.get("e"), Some(&5));
        assert_eq!(
            m.take_dropped(),
            Dropped {
                cap: 2,
                ..Default::default()
            }
        );
        assert_eq!(m.take_dropped(), Dropped::default());
    }

    #[test]
    fn age_limit_expires_from_the_front_as_the_clock_moves() {
        let mut m = Bounded::new(Limits::new(100, Some(Duration::seconds(60))));
        m.advance(t(0));
        m.insert("old", 1);
        m.advance(t(30));
        m.insert("young", 2);
        m.advance(t(50));
        assert!(m.touch("old")); // touched at 50: lives until 110
        m.advance(t(95));
        assert!(!m.contains_key("young"), "untouched since 30");
        assert!(m.contains_key("old"));
        m.advance(t(111));
        assert!(m.is_empty());
        assert_eq!(
            m.take_dropped(),
            Dropped {
                age: 2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn clock_never_goes_back() {
        let mut m = Bounded::new(Limits::new(10, Some(Duration::seconds(10))));
        m.advance(t(100));
        m.advance(t(0));
        m.insert("k", ());
        assert_eq!(m.now(), Some(t(100)));
        m.advance(t(105));
        assert!(
            m.contains_key("k"),
            "stamped with the clock, not the older event time"
        );
    }

    #[test]
    fn entry_keeps_existing_value_and_get_does_not_touch() {
        let mut m = Bounded::new(Limits::new(2, None));
        m.insert(1, "one");
        m.insert(2, "two");
        assert_eq!(*m.entry(1).or_insert("uno"), "one");
        assert_eq!(m.get(&2), Some(&"two")); // read only: 2 stays least recent
        m.insert(3, "three");
        assert!(!m.contains_key(&2));
        assert_eq!(m.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(m.remove(&1), Some("one"));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_full_map_costs_the_same_per_insert() {
        // 1,000,000 distinct keys through a 1,000-entry map: every insert past
        // the cap evicts exactly one entry (no scan, no growth).
        let mut m = Bounded::new(Limits::new(1000, Some(Duration::minutes(10))));
        for i in 0..1_000_000u32 {
            m.advance_ms(i64::from(i));
            m.insert(i, ());
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.take_dropped().cap, 999_000);
    }
}

#[cfg(test)]
#[path = "bounded_tests.rs"]
mod owner_tests;
