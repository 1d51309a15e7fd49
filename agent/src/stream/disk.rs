//! The spool's optional disk mirror (`--spool-dir`): lets a restarted agent
//! resend what the aggregator never acknowledged, in the same stream epoch.
//!
//! Files in the directory:
//! - `epoch`: the stream epoch (decimal), created once;
//! - `acked`: the highest acknowledged sequence number (decimal, replaced
//!   atomically by rename);
//! - `spool.log`: records `seq: u64 LE | len: u32 LE | pb::Observation`,
//!   appended; truncated when everything in it is acknowledged.
//!
//! Observations hold no secret (claims and fingerprints only), so the log
//! holds none either; it is still created with mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read as _, Write as _};
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

/// Truncate the log once it is fully acknowledged and at least this big.
const COMPACT_BYTES: u64 = 1 << 20;

/// See the module documentation.
#[derive(Debug)]
pub struct DiskLog {
    dir: PathBuf,
    epoch: u64,
    log: BufWriter<File>,
    log_bytes: u64,
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

impl DiskLog {
    /// Opens (creating) the spool directory; picks a new epoch if none is stored.
    pub fn open(dir: &Path) -> Result<Self, DiskError> {
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
        let log_path = dir.join("spool.log");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let log_bytes = file.metadata().map_err(io(&log_path))?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            epoch,
            log: BufWriter::new(file),
            log_bytes,
        })
    }

    /// The stream epoch the records belong to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The acknowledged mark and the records after it, in order. A torn last
    /// record (crash mid-write) is ignored.
    pub fn load(&mut self) -> Result<(u64, Vec<(u64, Bytes)>), DiskError> {
        let acked = read_u64(&self.dir.join("acked"))?.unwrap_or(0);
        let log_path = self.dir.join("spool.log");
        let mut bytes = Vec::new();
        File::open(&log_path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io(&log_path))?;
        let mut out = Vec::new();
        let mut rest = bytes.as_slice();
        while rest.len() >= 12 {
            let seq = u64::from_le_bytes(rest[..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default()) as usize;
            if rest.len() < 12 + len {
                break;
            }
            let body = &rest[12..12 + len];
            if seq > acked {
                // Refuse a corrupt record here rather than send it.
                pb::Observation::decode(body).map_err(|e| DiskError::Corrupt {
                    path: log_path.clone(),
                    reason: format!("record {seq}: {e}"),
                })?;
                out.push((seq, Bytes::copy_from_slice(body)));
            }
            rest = &rest[12 + len..];
        }
        Ok((acked, out))
    }

    /// Appends one record (buffered; see [`DiskLog::flush`]).
    pub fn append(&mut self, seq: u64, body: &[u8]) -> Result<(), DiskError> {
        let path = self.dir.join("spool.log");
        let len = u32::try_from(body.len()).map_err(|_| DiskError::Corrupt {
            path: path.clone(),
            reason: "observation larger than 4 GiB".into(),
        })?;
        self.log.write_all(&seq.to_le_bytes()).map_err(io(&path))?;
        self.log.write_all(&len.to_le_bytes()).map_err(io(&path))?;
        self.log.write_all(body).map_err(io(&path))?;
        self.log_bytes += 12 + u64::from(len);
        Ok(())
    }

    /// Pushes buffered records to the file.
    pub fn flush(&mut self) -> Result<(), DiskError> {
        let path = self.dir.join("spool.log");
        self.log.flush().map_err(io(&path))
    }

    /// Records the acknowledged mark; truncates the log when `all_acked`
    /// and it has grown.
    pub fn ack(&mut self, seq: u64, all_acked: bool) -> Result<(), DiskError> {
        self.flush()?;
        write_u64(&self.dir.join("acked"), seq)?;
        if all_acked && self.log_bytes >= COMPACT_BYTES {
            let path = self.dir.join("spool.log");
            self.log.get_ref().set_len(0).map_err(io(&path))?;
            self.log_bytes = 0;
        }
        Ok(())
    }
}
