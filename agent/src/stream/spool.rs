//! The bounded spool: every observation waits here, with its sequence
//! number, until the aggregator acknowledges it.
//!
//! - Bounded in count and in bytes: at `capacity` observations, or when the
//!   next one would take the held observations past `max_bytes` (each counts
//!   its encoded length plus a 12-byte record header, as on disk), the
//!   **oldest** are dropped and counted; the count goes out as a
//!   `Loss { stage: "spool" }` observation and in every heartbeat. Never
//!   silent. The disk mirror has the same byte bound; when it deletes its
//!   oldest segment to stay within it, the records it held are dropped here
//!   too (counted the same way).
//! - Sequence numbers are consecutive within the stream epoch; the spool is
//!   always a consecutive run `first_seq..=last_seq`.
//! - `sent` marks how far the current connection has sent; after a
//!   reconnect it is rewound to the aggregator's resume point.
//! - Observations are held encoded (protobuf): a batch shares their bytes
//!   instead of copying them, and the disk mirror writes the same bytes.
//! - Optionally mirrored to disk ([`super::disk::DiskLog`]) so that a
//!   restarted agent resends what the aggregator never acknowledged.

use std::collections::VecDeque;

use bytes::Bytes;
use credtrail_proto::pb::agent as pb;

use super::disk::{DiskError, DiskLog, MIN_MAX_BYTES, RECORD_HEADER};

/// What one observation counts against the byte bound: as on disk.
fn record_bytes(obs: &Bytes) -> u64 {
    obs.len() as u64 + RECORD_HEADER
}

/// See the module documentation.
#[derive(Debug)]
pub struct Spool {
    items: VecDeque<Bytes>,
    /// Sequence number of `items[0]` (or of the next push when empty).
    first_seq: u64,
    capacity: usize,
    /// Bytes held (encoded lengths plus record headers) and their bound.
    bytes: u64,
    max_bytes: u64,
    /// Highest sequence number sent on the current connection.
    sent: u64,
    /// Highest sequence number acknowledged.
    acked: u64,
    dropped_total: u64,
    dropped_unreported: u64,
    disk: Option<DiskLog>,
}

impl Spool {
    /// An empty in-memory spool starting at sequence number 1, holding at
    /// most `capacity` observations and `max_bytes` bytes (at least
    /// [`MIN_MAX_BYTES`]).
    pub fn new(capacity: usize, max_bytes: u64) -> Self {
        Self {
            items: VecDeque::new(),
            first_seq: 1,
            capacity: capacity.max(2),
            bytes: 0,
            max_bytes: max_bytes.max(MIN_MAX_BYTES),
            sent: 0,
            acked: 0,
            dropped_total: 0,
            dropped_unreported: 0,
            disk: None,
        }
    }

    /// A spool mirrored to `disk`, starting with what the log still holds.
    /// The byte bound is the disk's.
    pub fn with_disk(capacity: usize, mut disk: DiskLog) -> Result<Self, DiskError> {
        let mut s = Self::new(capacity, disk.max_bytes());
        let (acked, records) = disk.load()?;
        s.acked = acked;
        s.sent = acked;
        s.first_seq = acked + 1;
        for (seq, obs) in records {
            if s.items.is_empty() && seq > s.first_seq {
                // The oldest segments were deleted to stay within the byte bound before
                // the restart: those observations were dropped (counted again here, so
                // that a drop the previous run could not report is not silent).
                let gap = seq - s.first_seq;
                s.dropped_total += gap;
                s.dropped_unreported += gap;
                s.first_seq = seq;
                s.sent = s.sent.max(seq - 1);
            }
            if seq != s.first_seq + s.items.len() as u64 {
                // A torn tail or a hole: keep only the consecutive run.
                break;
            }
            s.bytes += record_bytes(&obs);
            s.items.push_back(obs);
        }
        while s.items.len() > s.capacity || s.bytes > s.max_bytes {
            s.drop_oldest();
        }
        s.disk = Some(disk);
        Ok(s)
    }

    /// Drops the oldest observation, counted; false when empty.
    fn drop_oldest(&mut self) -> bool {
        let Some(old) = self.items.pop_front() else {
            return false;
        };
        self.bytes -= record_bytes(&old);
        self.first_seq += 1;
        self.dropped_total += 1;
        self.dropped_unreported += 1;
        // A dropped observation can no longer be sent or acknowledged.
        self.sent = self.sent.max(self.first_seq - 1);
        true
    }

    /// Bytes held, as counted against the bound.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `obs`, returning its sequence number. Drops the oldest
    /// observation first when the spool is full.
    pub fn push(&mut self, obs: Bytes) -> u64 {
        self.make_room(obs.len());
        let seq = self.next_seq();
        if let Some(d) = &mut self.disk {
            match d.append(seq, &obs) {
                // Room was made above; should the disk still have deleted a segment,
                // what it held is gone.
                Ok(Some(lost_through)) => {
                    while self.first_seq <= lost_through && self.drop_oldest() {}
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("spool disk log: {e}; continuing in memory only");
                    self.disk = None;
                }
            }
        }
        self.bytes += record_bytes(&obs);
        self.items.push_back(obs);
        seq
    }

    /// Drops the oldest observations (counted) until one of `len` encoded
    /// bytes fits: in count, in bytes, and on disk (whose oldest segments go,
    /// with the observations they held).
    pub fn make_room(&mut self, len: usize) {
        let cost = len as u64 + RECORD_HEADER;
        let mut dropped = false;
        while (self.items.len() >= self.capacity || self.bytes + cost > self.max_bytes)
            && self.drop_oldest()
        {
            dropped = true;
        }
        let Some(d) = &mut self.disk else {
            return;
        };
        // Segments holding only dropped observations go at once.
        let result = if dropped {
            d.forget_through(self.first_seq - 1)
        } else {
            Ok(())
        }
        .and_then(|()| d.make_room(cost));
        match result {
            Ok(Some(lost_through)) => while self.first_seq <= lost_through && self.drop_oldest() {},
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("spool disk log: {e}; continuing in memory only");
                self.disk = None;
            }
        }
    }

    /// Writes buffered disk records out (called after each chunk of input).
    pub fn flush_disk(&mut self) {
        if let Some(d) = &mut self.disk
            && let Err(e) = d.flush()
        {
            tracing::warn!("spool disk log: {e}; continuing in memory only");
            self.disk = None;
        }
    }

    /// The number the next push gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.items.len() as u64
    }

    /// Highest sequence number assigned so far.
    pub fn last_seq(&self) -> u64 {
        self.next_seq() - 1
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Lowest sequence number still held (what a reconnect can resend).
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Observations dropped because the bound was hit, since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Drops not yet reported in a Loss observation; resets the count.
    pub fn take_unreported_drops(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_unreported)
    }

    /// Everything up to `seq` is stored by the aggregator.
    pub fn ack(&mut self, seq: u64) {
        let seq = seq.min(self.last_seq());
        if seq <= self.acked {
            return;
        }
        while self.first_seq <= seq {
            let Some(done) = self.items.pop_front() else {
                break;
            };
            self.bytes -= record_bytes(&done);
            self.first_seq += 1;
        }
        self.acked = seq;
        self.first_seq = self.first_seq.max(seq + 1);
        self.sent = self.sent.max(seq);
        if let Some(d) = &mut self.disk
            && let Err(e) = d.ack(seq, self.items.is_empty())
        {
            tracing::warn!("spool disk log: {e}; continuing in memory only");
            self.disk = None;
        }
    }

    /// A new connection: resend everything after `acked` (the aggregator's
    /// resume point, which may be ahead of ours).
    pub fn rewind(&mut self, acked: u64) {
        self.ack(acked);
        self.sent = self.acked.max(self.first_seq - 1);
    }

    /// Observations sent and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.sent.saturating_sub(self.acked.max(self.first_seq - 1))
    }

    /// Whether anything waits to be sent on the current connection.
    pub fn has_unsent(&self) -> bool {
        self.sent < self.last_seq()
    }

    /// The next batch to send (at most `max` observations and, beyond its
    /// first observation, at most `max_bytes` encoded bytes), marking it
    /// sent. Observations never exceed [`super::MAX_OBSERVATION_BYTES`]
    /// (the client replaces larger ones by a loss record), so a batch always
    /// fits the aggregator's request limit.
    pub fn next_batch(
        &mut self,
        max: usize,
        max_bytes: usize,
    ) -> Option<pb::EncodedObservationBatch> {
        if !self.has_unsent() {
            return None;
        }
        let from = self.sent.max(self.first_seq - 1) + 1;
        let start = (from - self.first_seq) as usize;
        let end = (start + max.max(1)).min(self.items.len());
        let mut bytes = 0usize;
        let mut observations: Vec<Bytes> = Vec::new();
        for o in self.items.range(start..end) {
            // Field tag and length prefix: at most 11 bytes.
            let cost = o.len() + 11;
            if !observations.is_empty() && bytes + cost > max_bytes {
                break;
            }
            bytes += cost;
            observations.push(o.clone());
        }
        self.sent = from + observations.len() as u64 - 1;
        Some(pb::EncodedObservationBatch {
            first_seq: from,
            observations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use prost::Message as _;

    fn obs(id: &str) -> Bytes {
        pb::Observation {
            id: id.into(),
            ..Default::default()
        }
        .encode_to_vec()
        .into()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn ids(b: &pb::EncodedObservationBatch) -> Vec<String> {
        b.observations
            .iter()
            .map(|o| pb::Observation::decode(o.as_ref()).unwrap().id)
            .collect()
    }

    #[test]
    fn batches_acks_and_rewinds() {
        let mut s = Spool::new(100, u64::MAX);
        for i in 1..=5 {
            assert_eq!(s.push(obs(&i.to_string())), i);
        }
        let b = s.next_batch(3, usize::MAX).unwrap();
        assert_eq!((b.first_seq, ids(&b)), (1, strs(&["1", "2", "3"])));
        let b = s.next_batch(3, usize::MAX).unwrap();
        assert_eq!((b.first_seq, ids(&b)), (4, strs(&["4", "5"])));
        assert!(s.next_batch(3, usize::MAX).is_none());
        assert_eq!(s.in_flight(), 5);
        s.ack(3);
        assert_eq!((s.len(), s.first_seq(), s.in_flight()), (2, 4, 2));
        // Reconnect: the aggregator had stored up to 4 only.
        s.rewind(4);
        let b = s.next_batch(10, usize::MAX).unwrap();
        assert_eq!((b.first_seq, ids(&b)), (5, strs(&["5"])));
        s.ack(5);
        assert!(s.is_empty());
        assert_eq!(s.push(obs("6")), 6);
    }

    #[test]
    fn full_spool_drops_oldest_and_counts() {
        let mut s = Spool::new(3, u64::MAX);
        for i in 1..=5 {
            s.push(obs(&i.to_string()));
        }
        assert_eq!(s.dropped_total(), 2);
        assert_eq!(s.take_unreported_drops(), 2);
        assert_eq!(s.take_unreported_drops(), 0);
        let b = s.next_batch(10, usize::MAX).unwrap();
        assert_eq!((b.first_seq, ids(&b)), (3, strs(&["3", "4", "5"])));
        // Dropping what was in flight moves the sent mark with it.
        s.push(obs("6"));
        assert_eq!(s.first_seq(), 4);
        let b = s.next_batch(10, usize::MAX).unwrap();
        assert_eq!((b.first_seq, ids(&b)), (6, strs(&["6"])));
        // An ack beyond what was assigned is clamped.
        s.ack(99);
        assert!(s.is_empty());
        assert_eq!(s.next_seq(), 7);
    }

    #[test]
    fn disk_spool_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s =
                Spool::with_disk(10, DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap()).unwrap();
            for i in 1..=4 {
                s.push(obs(&i.to_string()));
            }
            s.next_batch(10, usize::MAX);
            s.ack(2);
        }
        let mut s =
            Spool::with_disk(10, DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap()).unwrap();
        assert_eq!((s.acked(), s.first_seq(), s.len()), (2, 3, 2));
        let b = s.next_batch(10, usize::MAX).unwrap();
        assert_eq!((b.first_seq, ids(&b)), (3, strs(&["3", "4"])));
        assert_eq!(s.push(obs("5")), 5);
        s.ack(5);
        drop(s);
        let s = Spool::with_disk(10, DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap()).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.next_seq(), 6);
    }

    #[test]
    fn batches_are_split_by_encoded_bytes() {
        let mut s = Spool::new(100, u64::MAX);
        for i in 0..10 {
            s.push(Bytes::from(vec![b'x'; 1000 + i]));
        }
        // 3 observations of ~1 KiB fit in 3.1 KB, the fourth does not.
        let b = s.next_batch(100, 3100);
        assert_eq!(b.as_ref().map(|b| b.observations.len()), Some(3));
        let total: usize = b.unwrap().observations.iter().map(Bytes::len).sum();
        assert!(total <= 3100);
        // One observation larger than the bound still goes alone (never stuck).
        let b = s.next_batch(100, 10).unwrap();
        assert_eq!((b.first_seq, b.observations.len()), (4, 1));
        let mut left = 0;
        while let Some(b) = s.next_batch(100, 2500) {
            assert!(b.observations.len() <= 2);
            left += b.observations.len();
        }
        assert_eq!(left, 6);
    }

    fn dir_bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    /// The aggregator is away for long: the disk spool stays under its byte
    /// bound (so the volume's size limit is never reached and the pod never
    /// evicted), keeps the newest observations, and counts every one dropped.
    #[test]
    fn disk_spool_stays_under_its_byte_cap_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let cap = MIN_MAX_BYTES;
        let pushed = 20_000u64;
        {
            let mut s =
                Spool::with_disk(1_000_000, DiskLog::open(dir.path(), cap).unwrap()).unwrap();
            for i in 1..=pushed {
                let o = obs(&format!("{i:05}{}", "x".repeat(300)));
                assert_eq!(s.push(o), i);
                assert!(s.bytes() <= cap, "memory: {} > {cap}", s.bytes());
                if i % 250 == 0 {
                    s.flush_disk();
                    let on_disk = dir_bytes(dir.path());
                    // Beside the segments: the epoch file (a few bytes).
                    assert!(on_disk <= cap + 64, "disk: {on_disk} > {cap} after {i}");
                }
            }
            assert!(
                s.dropped_total() > 0,
                "20,000 x 300 bytes cannot fit in {cap}"
            );
            assert_eq!(s.dropped_total() + s.len() as u64, pushed);
            assert_eq!(s.take_unreported_drops(), s.dropped_total());
            assert_eq!(s.last_seq(), pushed);
            assert_eq!(s.first_seq(), pushed - s.len() as u64 + 1);
            // What goes out next is the oldest kept, not something dropped.
            let b = s.next_batch(1, usize::MAX).unwrap();
            assert_eq!(b.first_seq, s.first_seq());
        }
        // Restarted: the newest are still there, within the bound.
        let mut s = Spool::with_disk(1_000_000, DiskLog::open(dir.path(), cap).unwrap()).unwrap();
        assert_eq!(s.last_seq(), pushed);
        assert!(s.len() > 1000 && s.bytes() <= cap);
        let b = s.next_batch(10, usize::MAX).unwrap();
        assert_eq!(b.first_seq, s.first_seq());
        assert!(ids(&b)[0].starts_with(&format!("{:05}", s.first_seq())));
        // Acknowledged: the disk gives the space back.
        s.ack(pushed);
        assert!(dir_bytes(dir.path()) < cap / 4, "{}", dir_bytes(dir.path()));
    }

    #[test]
    fn memory_spool_is_bounded_in_bytes_too() {
        let mut s = Spool::new(1_000_000, MIN_MAX_BYTES);
        for i in 1..=10_000u64 {
            s.push(Bytes::from(vec![b'x'; 1000]));
            assert!(s.bytes() <= MIN_MAX_BYTES);
            assert_eq!(s.dropped_total() + s.len() as u64, i);
        }
        assert!(s.dropped_total() > 0);
        assert_eq!(s.last_seq(), 10_000);
        // A bound below the minimum is raised to it (room for the largest observation).
        let mut s = Spool::new(10, 0);
        s.push(Bytes::from(vec![b'x'; super::super::MAX_OBSERVATION_BYTES]));
        assert_eq!((s.len(), s.dropped_total()), (1, 0));
    }
}
