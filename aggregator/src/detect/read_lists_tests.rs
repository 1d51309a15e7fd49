//! Read lists' bookkeeping (`read_lists.rs`): reads of expired tokens
//! dropped and counted when a list is touched, one queue item per key and
//! expiry, the queue rebuilt exactly past its bound, and a list's memory
//! given back when most of its reads expire.

use chrono::Duration;

use super::tests::{read, t};
use super::*;

fn lists() -> ReadLists {
    let mut l = ReadLists::new(Limits::new(100, Some(Duration::days(7))));
    l.map.advance(t(0));
    l
}

const GRACE: i64 = READ_EXPIRY_GRACE.num_seconds();

#[test]
fn touching_a_list_drops_and_counts_only_its_reads_of_expired_tokens() {
    let mut l = lists();
    l.add("user", read(1, Some(60)));
    l.add("user", read(2, Some(100_000)));
    l.add("user", read(3, None));
    l.map.advance(t(60 + GRACE));
    l.add("user", read(4, None));
    let left: Vec<u32> = l.get("user").iter().map(|r| r.tgid).collect();
    assert_eq!(left, [2, 3, 4]);
    assert_eq!(l.map.take_dropped().expired, 1);
}

#[test]
fn reads_sharing_an_expiry_queue_their_key_once() {
    let mut l = lists();
    for tgid in 1..=10 {
        l.add("user", read(tgid, Some(600)));
    }
    assert_eq!(l.get("user").len(), 10);
    assert_eq!(l.queued(), 1);
    l.add("user", read(11, Some(700)));
    assert_eq!(l.queued(), 2, "a new expiry queues the key again");
    l.add("other", read(1, Some(600)));
    assert_eq!(l.queued(), 3, "per key");
}

#[test]
fn the_queue_is_rebuilt_once_it_holds_more_than_twice_the_keys_and_1024() {
    let mut l = lists();
    // Three keys, two of them with reads of tokens without `exp`.
    l.add("a", read(1, None));
    l.add("b", read(1, None));
    // One process re-reading a rotated token: one read, a new expiry each time.
    let bound = 2 * 3 + 1024;
    for i in 0..bound {
        l.add("user", read(1, Some(1_000 + i as i64)));
        assert_eq!(l.queued(), i + 1);
    }
    l.add("user", read(1, Some(5_000)));
    assert_eq!(l.queued(), 1, "rebuilt: the one expiry still held");
    assert_eq!(l.rebuilds, 1);
}

#[test]
fn a_list_gives_its_memory_back_when_most_of_its_reads_expire_and_keeps_it_otherwise() {
    let mut l = lists();
    for tgid in 0..READS_PER_KEY as u32 {
        let exp = if tgid < 32 { 100 } else { 200 };
        l.add("user", read(tgid, Some(exp)));
    }
    let cap = |l: &ReadLists| l.map.get("user").map(Vec::capacity).unwrap();
    let full = cap(&l);
    assert!(full >= READS_PER_KEY);
    // 32 of 64 go: 32 left, half the room still used.
    l.map.advance(t(100 + GRACE));
    l.expire(|_, _| {});
    assert_eq!(l.get("user").len(), 32);
    assert_eq!(cap(&l), full, "no reallocation for a list still half full");
    // A read without `exp` keeps the list; the other 32 go.
    l.add("user", read(1_000, None));
    l.map.advance(t(200 + GRACE));
    l.expire(|_, _| {});
    assert_eq!(l.get("user").len(), 1);
    assert!(cap(&l) < 4, "capacity {} for one read", cap(&l));
}

/// An expiry pass that finds a list's reads already gone (dropped when the
/// list was last touched) leaves the list alone: no reallocation for
/// nothing removed, whatever room the list has spare.
#[test]
fn an_expiry_that_removes_nothing_does_not_reallocate() {
    let mut l = lists();
    for tgid in 0..READS_PER_KEY as u32 {
        let exp = if tgid < 48 { 100 } else { 200 };
        l.add("user", read(tgid, Some(exp)));
    }
    let cap = |l: &ReadLists| l.map.get("user").map(Vec::capacity).unwrap();
    let full = cap(&l);
    l.map.advance(t(100 + GRACE));
    // Touching the list drops the 48 expired reads (and keeps the room).
    l.add("user", read(1_000, None));
    assert_eq!(l.get("user").len(), 17);
    assert_eq!(cap(&l), full);
    // The queued expiry at 100 now finds nothing to remove.
    l.expire(|_, _| panic!("the list is not empty"));
    assert_eq!(l.get("user").len(), 17);
    assert_eq!(cap(&l), full, "nothing removed, nothing reallocated");
}
