//! [`Bounded`] as its owners use it: reads that leave the last-used order
//! alone, writes that move an entry to the back, both bounds counted, the
//! clock, and the owner's own removals (front, room, expiry hand-over).

use chrono::{DateTime, Duration, Utc};

use super::*;

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
}

fn keys<V>(m: &Bounded<&'static str, V>) -> Vec<&'static str> {
    m.keys().copied().collect()
}

#[test]
fn reads_leave_the_order_alone_and_writes_move_to_the_back() {
    let mut m = Bounded::new(Limits::new(3, None));
    assert!(m.is_empty());
    for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
        assert_eq!(m.insert(k, v), None);
    }
    assert!(!m.is_empty());
    assert_eq!(m.len(), 3);
    // Reads.
    assert_eq!(m.get("a"), Some(&1));
    assert_eq!(m.get("zz"), None);
    assert_eq!(m.get_key_value("b"), Some((&"b", &2)));
    assert_eq!(m.get_key_value("zz"), None);
    assert_eq!(m["c"], 3);
    assert!(m.contains_key("a") && !m.contains_key("zz"));
    *m.peek_mut("a").unwrap() += 10;
    assert!(m.peek_mut("zz").is_none());
    assert_eq!(keys(&m), ["a", "b", "c"], "reads do not touch");
    assert_eq!(m.values().copied().collect::<Vec<_>>(), [11, 2, 3]);
    assert_eq!(
        m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
        [("a", 11), ("b", 2), ("c", 3)]
    );
    // Writes.
    assert!(m.touch("a"));
    assert!(!m.touch("zz"));
    assert_eq!(keys(&m), ["b", "c", "a"]);
    *m.get_mut("b").unwrap() += 20;
    assert!(m.get_mut("zz").is_none());
    assert_eq!(keys(&m), ["c", "a", "b"]);
    // Replacing a key of a full map evicts nothing and returns the old value.
    assert_eq!(m.insert("c", 30), Some(3));
    assert_eq!(*m.entry("a").or_insert(99), 11);
    assert_eq!(keys(&m), ["b", "c", "a"]);
    assert_eq!(m.len(), 3);
    assert_eq!(m.take_dropped(), Dropped::default());
    // A new key evicts the least recently used one.
    assert_eq!(*m.entry("d").or_insert_with(|| 4), 4);
    assert_eq!(keys(&m), ["c", "a", "d"]);
    assert_eq!(m.remove("c"), Some(30));
    assert_eq!(m.remove("c"), None);
    assert_eq!(*m.entry("e").or_default(), 0);
    assert_eq!(m.len(), 3);
    assert_eq!(m.take_dropped().cap, 1);
    m.retain(|_, v| *v % 2 == 0);
    assert_eq!(keys(&m), ["d", "e"]);
}

#[test]
fn shrinking_the_limits_evicts_the_least_recently_used_now() {
    let mut m = Bounded::new(Limits::new(5, None));
    for (i, k) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        m.insert(k, i);
    }
    m.touch("a");
    let l = Limits::new(2, Some(Duration::seconds(10)));
    m.set_limits(l);
    assert_eq!(m.limits(), l);
    assert_eq!(keys(&m), ["e", "a"]);
    assert_eq!(m.take_dropped().cap, 3);
    // At least one entry, whatever the policy says.
    m.set_limits(Limits::new(0, None));
    assert_eq!(m.limits(), Limits::new(1, None));
    assert_eq!(keys(&m), ["a"]);
    assert_eq!(m.take_dropped().cap, 1);
    m.insert("f", 9);
    assert_eq!(keys(&m), ["f"]);
    let mut tiny: Bounded<&str, ()> = Bounded::new(Limits::new(0, None));
    assert_eq!(tiny.limits().max_entries, 1);
    tiny.insert("x", ());
    assert_eq!(tiny.len(), 1);
}

#[test]
fn an_entry_exactly_max_age_old_is_kept_and_one_millisecond_more_expires() {
    let mut m = Bounded::new(Limits::new(10, Some(Duration::seconds(60))));
    assert_eq!(m.now(), None, "no clock before the first event");
    m.advance(t(0));
    assert_eq!(m.now(), Some(t(0)));
    m.insert("k", 1);
    m.advance(t(60));
    assert!(m.contains_key("k"));
    m.advance_ms(t(60).timestamp_millis() + 1);
    assert!(m.is_empty());
    assert_eq!(m.take_dropped().age, 1);
    // The clock only moves forward, in milliseconds too.
    m.advance_ms(t(1).timestamp_millis());
    assert_eq!(m.now(), Some(t(60) + Duration::milliseconds(1)));
}

#[test]
fn expired_entries_are_handed_over_oldest_first() {
    let mut m = Bounded::new(Limits::new(10, Some(Duration::seconds(10))));
    m.advance(t(0));
    m.insert("a", 1);
    m.advance(t(5));
    m.insert("b", 2);
    m.advance(t(9));
    m.insert("c", 3);
    let mut gone = Vec::new();
    m.advance_with(t(16), |k, v| gone.push((k, v)));
    assert_eq!(gone, [("a", 1), ("b", 2)]);
    assert_eq!(keys(&m), ["c"]);
    assert_eq!(m.take_dropped().age, 2);
}

#[test]
fn the_owner_makes_room_and_removes_from_the_front() {
    let mut m = Bounded::new(Limits::new(3, None));
    for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
        m.insert(k, v);
    }
    // The front is the least recently used, changed in place, not touched.
    let (k, v) = m.front_mut().unwrap();
    assert_eq!(*k, "a");
    *v = 100;
    assert_eq!(keys(&m), ["a", "b", "c"]);
    let mut gone = Vec::new();
    m.make_room_with(|k, v| gone.push((k, v)));
    assert_eq!(gone, [("a", 100)]);
    assert_eq!(m.len(), 2);
    // Room already there: nothing goes.
    m.make_room_with(|k, v| gone.push((k, v)));
    assert_eq!(gone.len(), 1);
    assert_eq!(m.take_dropped().cap, 1);
    // Removed by the owner: not counted.
    assert_eq!(m.pop_front(), Some(("b", 2)));
    assert_eq!(m.take_dropped(), Dropped::default());
    assert_eq!(m.pop_front(), Some(("c", 3)));
    assert_eq!(m.pop_front(), None);
    assert!(m.front_mut().is_none());
    // The owner's own bounds are counted where it says.
    m.count_cap_dropped(3);
    m.count_cap_dropped(1);
    m.count_expired(2);
    m.count_expired(5);
    assert_eq!(
        m.take_dropped(),
        Dropped {
            cap: 4,
            age: 0,
            expired: 7
        }
    );
}
