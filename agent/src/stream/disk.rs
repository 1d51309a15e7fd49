//! The spool's optional disk mirror (`--spool-dir`): lets a restarted agent
//! resend what the aggregator never acknowledged, in the same stream epoch.
//!
//! Files in the directory:
//! - `epoch`: the stream epoch (decimal), created once;
//! - `acked`: the highest acknowledged sequence number (decimal, replaced
//!   atomically by rename);
//! - `spool-<n>.log`: segments of records `seq: u64 LE | len: u32 LE |
//!   pb::Observation`, appended to the newest (each start of the agent opens
//!   a new one; `spool.log` of older agents is read as the oldest).
//!
//! **Bounded in bytes** (`--spool-max-bytes`): the segments together never
//! exceed `max_bytes`. A segment is deleted once every record in it is
//! acknowledged; to make room for a new record the oldest segment is deleted
//! and its unacknowledged records are lost: [`DiskLog::append`] says up to
//! which sequence number, and the spool drops and counts them. Nothing is
//! ever copied, so the directory never holds more than the bound (plus the
//! two small state files): the volume's size limit is never hit.
//!
//! Observations hold no secret (claims and fingerprints only), so the log
//! holds none either; it is still created with mode 0600.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use credtrail_proto::pb::agent as pb;
use prost::Message as _;

/// Errors of the disk mirror.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("spool directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Smallest byte bound: room for several of the largest observations
/// ([`super::MAX_OBSERVATION_BYTES`]) in several segments.
pub const MIN_MAX_BYTES: u64 = 4 * (super::MAX_OBSERVATION_BYTES as u64 + RECORD_HEADER);

/// Bytes of a record before its body.
pub const RECORD_HEADER: u64 = 12;

/// Segments per bound: deleting the oldest frees about this fraction.
const SEGMENTS: u64 = 8;

/// Truncate the current segment once it is fully acknowledged and at least this big.
const COMPACT_BYTES: u64 = 1 << 20;

/// A record longer than this is not one we wrote (a torn or damaged file).
const MAX_RECORD_BODY: usize = 2 * super::MAX_OBSERVATION_BYTES;

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    /// Highest sequence number in it (0: none yet).
    last_seq: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct DiskLog {
    dir: PathBuf,
    epoch: u64,
    max_bytes: u64,
    segment_bytes: u64,
    /// Segments no longer appended to, oldest first.
    closed: VecDeque<Segment>,
    closed_bytes: u64,
    current: Segment,
    log: BufWriter<File>,
    next_index: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_u64(path: &Path) -> Result<Option<u64>, DiskError> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| DiskError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("not a number: {:?}", s.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn write_u64(path: &Path, v: u64) -> Result<(), DiskError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{v}\n")).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn remove(path: &Path) -> Result<(), DiskError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

fn create_segment(path: &Path) -> Result<File, DiskError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        // A link planted under a segment's name is refused, never followed.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io(path))
}

/// The segments already in `dir`, oldest first: `spool.log` (older agents),
/// then `spool-<n>.log` by `n`; and the next free index (past every
/// segment-like name, links included, so a new segment never takes one).
fn scan_segments(dir: &Path) -> Result<(Vec<(u64, PathBuf)>, u64), DiskError> {
    let mut next = 0;
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let index = if name == "spool.log" {
            Some(0)
        } else {
            name.strip_prefix("spool-")
                .and_then(|s| s.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
                .and_then(|n| n.checked_add(1))
        };
        let Some(i) = index else { continue };
        next = next.max(i);
        // Only regular files: a link or a folder planted here is not ours to read.
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            out.push((i, entry.path()));
        }
    }
    out.sort();
    Ok((out, next))
}

impl DiskLog {
    /// Opens (creating) the spool directory, bounded to `max_bytes` (at least
    /// [`MIN_MAX_BYTES`]); picks a new epoch if none is stored. Call
    /// [`DiskLog::load`] before appending.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, DiskError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let epoch_path = dir.join("epoch");
        let epoch = match read_u64(&epoch_path)? {
            Some(e) if e != 0 => e,
            _ => {
                let e = super::random_epoch();
                write_u64(&epoch_path, e)?;
                e
            }
        };
        let max_bytes = max_bytes.max(MIN_MAX_BYTES);
        let mut closed = VecDeque::new();
        let mut closed_bytes = 0;
        let (segments, next_index) = scan_segments(dir)?;
        for (_, path) in segments {
            let bytes = fs::metadata(&path).map_err(io(&path))?.len();
            closed_bytes += bytes;
            closed.push_back(Segment {
                path,
                bytes,
                last_seq: u64::MAX,
            });
        }
        let path = dir.join(format!("spool-{next_index}.log"));
        let file = create_segment(&path)?;
        let bytes = file.metadata().map_err(io(&path))?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            epoch,
            max_bytes,
            segment_bytes: (max_bytes / SEGMENTS).max(1),
            closed,
            closed_bytes,
            current: Segment {
                path,
                bytes,
                last_seq: 0,
            },
            log: BufWriter::new(file),
            next_index: next_index + 1,
        })
    }

    /// The stream epoch the records belong to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The byte bound in force.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes of every segment on disk (flushed or buffered).
    pub fn bytes(&self) -> u64 {
        self.closed_bytes + self.current.bytes
    }

    /// The acknowledged mark and the records after it, in order, reading the
    /// segments left by earlier runs. Over the byte bound (it was lowered),
    /// the oldest segments are deleted first. A torn or damaged record ends
    /// its segment's reading (the next segment is still read).
    pub fn load(&mut self) -> Result<(u64, Vec<(u64, Bytes)>), DiskError> {
        let acked = read_u64(&self.dir.join("acked"))?.unwrap_or(0);
        while self.bytes() > self.max_bytes {
            let Some(old) = self.closed.pop_front() else {
                break;
            };
            remove(&old.path)?;
            self.closed_bytes -= old.bytes;
        }
        let mut out = Vec::new();
        for seg in &mut self.closed {
            let file = File::open(&seg.path).map_err(io(&seg.path))?;
            let mut r = BufReader::new(file.take(seg.bytes));
            seg.last_seq = 0;
            let mut header = [0u8; RECORD_HEADER as usize];
            while r.read_exact(&mut header).is_ok() {
                let seq = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
                let len = u32::from_le_bytes(header[8..].try_into().unwrap_or_default()) as usize;
                if len > MAX_RECORD_BODY {
                    break;
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    break;
                }
                seg.last_seq = seg.last_seq.max(seq);
                if seq > acked {
                    // Refuse a corrupt record here rather than send it.
                    pb::Observation::decode(body.as_slice()).map_err(|e| DiskError::Corrupt {
                        path: seg.path.clone(),
                        reason: format!("record {seq}: {e}"),
                    })?;
                    out.push((seq, Bytes::from(body)));
                }
            }
        }
        // Segments holding only acknowledged records go at once.
        self.forget_through(acked)?;
        Ok((acked, out))
    }

    /// Appends one record (buffered; see [`DiskLog::flush`]). Returns
    /// `Some(s)` when segments were deleted to stay within the byte bound:
    /// every record up to `s` is gone from the disk.
    pub fn append(&mut self, seq: u64, body: &[u8]) -> Result<Option<u64>, DiskError> {
        let len = u32::try_from(body.len())
            .ok()
            .filter(|&l| l as usize <= MAX_RECORD_BODY)
            .ok_or_else(|| DiskError::Corrupt {
                path: self.current.path.clone(),
                reason: format!("observation of {} bytes is too large to spool", body.len()),
            })?;
        let record = RECORD_HEADER + u64::from(len);
        let lost = self.make_room(record)?;
        let path = &self.current.path;
        self.log.write_all(&seq.to_le_bytes()).map_err(io(path))?;
        self.log.write_all(&len.to_le_bytes()).map_err(io(path))?;
        self.log.write_all(body).map_err(io(path))?;
        self.current.bytes += record;
        self.current.last_seq = seq;
        Ok(lost)
    }

    /// Makes room for a record of `record` bytes (header included): starts a
    /// new segment when the current one is full, and deletes the oldest
    /// segments while the bound would be passed. Returns `Some(s)` when
    /// segments were deleted: every record up to `s` is gone from the disk.
    pub fn make_room(&mut self, record: u64) -> Result<Option<u64>, DiskError> {
        if self.current.bytes > 0 && self.current.bytes + record > self.segment_bytes {
            self.roll()?;
        }
        let mut lost = None;
        while self.bytes() + record > self.max_bytes {
            if self.closed.is_empty() {
                if self.current.bytes == 0 {
                    break;
                }
                self.roll()?;
            }
            let Some(old) = self.closed.pop_front() else {
                break;
            };
            remove(&old.path)?;
            self.closed_bytes -= old.bytes;
            lost = lost.max(Some(old.last_seq));
        }
        Ok(lost)
    }

    /// Closes the current segment and starts the next.
    fn roll(&mut self) -> Result<(), DiskError> {
        self.flush()?;
        let path = self.dir.join(format!("spool-{}.log", self.next_index));
        let file = create_segment(&path)?;
        self.next_index += 1;
        let old = std::mem::replace(
            &mut self.current,
            Segment {
                path,
                bytes: 0,
                last_seq: 0,
            },
        );
        self.log = BufWriter::new(file);
        self.closed_bytes += old.bytes;
        self.closed.push_back(old);
        Ok(())
    }

    /// Pushes buffered records to the file.
    pub fn flush(&mut self) -> Result<(), DiskError> {
        self.log.flush().map_err(io(&self.current.path))
    }

    /// Deletes the closed segments whose records all are at or below `seq`
    /// (acknowledged, or dropped from the spool).
    pub fn forget_through(&mut self, seq: u64) -> Result<(), DiskError> {
        while self.closed.front().is_some_and(|s| s.last_seq <= seq) {
            if let Some(old) = self.closed.pop_front() {
                remove(&old.path)?;
                self.closed_bytes -= old.bytes;
            }
        }
        Ok(())
    }

    /// Records the acknowledged mark; deletes fully acknowledged segments,
    /// and truncates the current one when `all_acked` and it has grown.
    pub fn ack(&mut self, seq: u64, all_acked: bool) -> Result<(), DiskError> {
        self.flush()?;
        write_u64(&self.dir.join("acked"), seq)?;
        self.forget_through(seq)?;
        if all_acked && self.current.bytes >= COMPACT_BYTES.min(self.segment_bytes) {
            self.log
                .get_ref()
                .set_len(0)
                .map_err(io(&self.current.path))?;
            self.current.bytes = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(id: &str, pad: usize) -> Vec<u8> {
        pb::Observation {
            id: format!("{id}{}", "x".repeat(pad)),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn on_disk(dir: &Path) -> u64 {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn never_holds_more_than_the_bound_and_says_what_it_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap();
        d.load().unwrap();
        let mut lost_through = 0;
        for seq in 1..=20_000u64 {
            if let Some(s) = d.append(seq, &obs(&seq.to_string(), 300)).unwrap() {
                assert!(s > lost_through && s < seq, "lost through {s} at {seq}");
                lost_through = s;
            }
            assert!(d.bytes() <= d.max_bytes());
        }
        d.flush().unwrap();
        // The files themselves (the state files are a few bytes each).
        assert!(
            on_disk(dir.path()) <= d.max_bytes() + 64,
            "{}",
            on_disk(dir.path())
        );
        assert!(
            lost_through > 0,
            "20,000 records of 300 bytes cannot fit in 1 MiB"
        );
        // What is left is the newest run, right after what was lost.
        drop(d);
        let mut d = DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap();
        let (_, records) = d.load().unwrap();
        assert_eq!(records.first().map(|r| r.0), Some(lost_through + 1));
        assert_eq!(records.last().map(|r| r.0), Some(20_000));
        assert!(records.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    }

    #[test]
    fn a_lowered_bound_and_a_hostile_length_are_survived() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = DiskLog::open(dir.path(), 4 * MIN_MAX_BYTES).unwrap();
        d.load().unwrap();
        for seq in 1..=10_000u64 {
            d.append(seq, &obs("a", 300)).unwrap();
        }
        d.flush().unwrap();
        drop(d);
        // A record claiming 4 GiB at the end of a segment: ignored, nothing allocated.
        let newest = scan_segments(dir.path())
            .unwrap()
            .0
            .into_iter()
            .map(|(_, p)| p)
            .rev()
            .find(|p| fs::metadata(p).unwrap().len() > 0)
            .unwrap();
        let mut f = OpenOptions::new().append(true).open(newest).unwrap();
        f.write_all(&99_999u64.to_le_bytes()).unwrap();
        f.write_all(&u32::MAX.to_le_bytes()).unwrap();
        drop(f);
        let mut d = DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap();
        let (_, records) = d.load().unwrap();
        assert!(d.bytes() <= MIN_MAX_BYTES);
        assert!(on_disk(dir.path()) <= MIN_MAX_BYTES + 64);
        assert_eq!(records.last().map(|r| r.0), Some(10_000));
        assert!(records.iter().all(|r| r.0 != 99_999));
    }

    #[test]
    fn acknowledged_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap();
        d.load().unwrap();
        for seq in 1..=2_000u64 {
            assert_eq!(d.append(seq, &obs("a", 300)).unwrap(), None);
        }
        let before = d.bytes();
        d.ack(1_500, false).unwrap();
        assert!(d.bytes() < before / 2, "{} of {before}", d.bytes());
        d.ack(2_000, true).unwrap();
        d.flush().unwrap();
        assert!(on_disk(dir.path()) < d.max_bytes() / 4);
        drop(d);
        let mut d = DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap();
        assert_eq!(d.load().unwrap(), (2_000, Vec::new()));
    }

    #[test]
    fn planted_links_are_neither_read_nor_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), b"outside").unwrap();
        // Links under segment names, the next free one included.
        for name in ["spool-0.log", "spool-1.log", "spool.log"] {
            std::os::unix::fs::symlink(outside.path(), dir.path().join(name)).unwrap();
        }
        let mut d = DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap();
        assert_eq!(d.load().unwrap(), (0, Vec::new()));
        d.append(1, &obs("a", 10)).unwrap();
        d.flush().unwrap();
        assert_eq!(std::fs::read(outside.path()).unwrap(), b"outside");
        assert!(dir.path().join("spool-2.log").is_file());
        drop(d);
        let mut d = DiskLog::open(dir.path(), MIN_MAX_BYTES).unwrap();
        let (_, records) = d.load().unwrap();
        assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1]);
    }
}
