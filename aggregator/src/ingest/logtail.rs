//! The audit log backend: tails `--audit-log-path` (JSON lines).
//!
//! - Only complete lines are consumed; the offset after the last consumed
//!   line is stored in the same transaction as the events, so a restart
//!   resumes exactly there (never twice, never skipped).
//! - Rotation (rename + new file): when the path names a new inode, the old
//!   file is read to its end first, then the new one from 0. After a restart,
//!   if the saved inode is no longer at the path, the rotated file is found
//!   in the same directory by inode and finished first, then any file of the
//!   same name stem rotated after it (oldest first; compressed ones skipped).
//! - Truncation (copytruncate): the offset goes back to 0.
//! - A malformed line is rejected (counted, reason logged) and skipped.
//! - With a cloud format ([`LogTailer::format`]) each line is one wrapper
//!   document (a Cloud Logging entry, a CloudWatch Logs subscription
//!   payload, an Event Hubs record batch) read by
//!   [`parse_document`](crate::audit::parse_document); its refused entries
//!   are counted like malformed lines, its skipped items under `audit_skipped`.

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::audit::{AuditEvent, InputFormat, parse_document, parse_event};
use crate::pipeline::{LogOffset, Pipeline, PipelineError};
use crate::plausible;

/// Lines per batch (the webhook's default batch size).
const BATCH_LINES: usize = 400;
const READ_CHUNK: usize = 1 << 20;

/// Errors that stop the tailer.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Tails one audit log file into the pipeline.
pub struct LogTailer {
    path: PathBuf,
    key: String,
    source: String,
    pipeline: Pipeline,
    poll: Duration,
    format: InputFormat,
}

struct Open {
    file: File,
    dev: u64,
    inode: u64,
    /// Bytes consumed (at a line end).
    offset: u64,
    /// Bytes read past `offset` that do not yet end a line.
    pending: Vec<u8>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TailError + '_ {
    move |source| TailError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LogTailer {
    pub fn new(path: PathBuf, pipeline: Pipeline) -> Self {
        let key = path.display().to_string();
        Self {
            source: format!("log:{key}"),
            key,
            path,
            pipeline,
            poll: Duration::from_millis(250),
            format: InputFormat::Native,
        }
    }

    /// How each line is read (default: native audit events).
    pub fn format(mut self, f: InputFormat) -> Self {
        self.format = f;
        self
    }

    /// How often to look for new data when idle.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll = d;
        self
    }

    async fn open_at(&self, path: &Path, offset: u64) -> Result<Option<Open>, TailError> {
        let mut file = match File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let md = file.metadata().await.map_err(io(path))?;
        let offset = if md.len() < offset { 0 } else { offset };
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io(path))?;
        Ok(Some(Open {
            file,
            dev: md.dev(),
            inode: md.ino(),
            offset,
            pending: Vec::new(),
        }))
    }

    /// Finds a file in the log's directory with this (dev, inode): the rotated log.
    fn find_rotated(&self, dev: u64, inode: u64) -> Option<PathBuf> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
            let md = e.metadata().ok()?;
            (md.is_file() && md.dev() == dev && md.ino() == inode).then(|| e.path())
        })
    }

    /// Uncompressed rotated files of this log (same directory) rotated
    /// after `old`, oldest first; not the live file.
    fn rotated_after(&self, old: &Path, live: Option<&std::fs::Metadata>) -> Vec<PathBuf> {
        let Some(dir) = self.path.parent() else {
            return Vec::new();
        };
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fname = self
            .path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let Ok(old_md) = std::fs::metadata(old) else {
            return Vec::new();
        };
        let since = old_md.modified().ok();
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let name = p.file_name()?.to_string_lossy().into_owned();
                let md = e.metadata().ok()?;
                let compressed = [".gz", ".zst", ".bz2", ".xz"]
                    .iter()
                    .any(|x| name.ends_with(x));
                let same = |m: &std::fs::Metadata| m.dev() == md.dev() && m.ino() == md.ino();
                let t = md.modified().ok()?;
                // logrotate: `audit.log.1`; lumberjack: `audit-<time>.log`.
                let ours = name.starts_with(&format!("{fname}."))
                    || (name.starts_with(&format!("{stem}-")) && name.ends_with(&ext));
                (md.is_file()
                    && ours
                    && !compressed
                    && !same(&old_md)
                    && !live.is_some_and(same)
                    && since.is_none_or(|s| t >= s))
                .then_some((t, p))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, p)| p).collect()
    }

    /// Reads what is available; ingests complete lines. With `to_end`, a final
    /// line without a newline is consumed too (the file will not grow again).
    /// Returns whether anything was read.
    async fn pump(&self, o: &mut Open, to_end: bool) -> Result<bool, TailError> {
        let mut any = false;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = o.file.read(&mut buf).await.map_err(io(&self.path))?;
            if n > 0 {
                any = true;
                o.pending.extend_from_slice(&buf[..n]);
            }
            let mut consumed = 0usize;
            let mut events: Vec<AuditEvent> = Vec::new();
            let mut rejected: Vec<String> = Vec::new();
            let mut implausible = 0u64;
            let now = chrono::Utc::now();
            loop {
                let rest = &o.pending[consumed..];
                let end = match rest.iter().position(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None if to_end && n == 0 && !rest.is_empty() => rest.len(),
                    None => break,
                };
                let line = rest[..end].strip_suffix(b"\n").unwrap_or(&rest[..end]);
                let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
                if !line.iter().all(u8::is_ascii_whitespace) {
                    let at = o.offset + consumed as u64;
                    let read: Vec<AuditEvent> = match self.format {
                        InputFormat::Native => match parse_event(line) {
                            Ok(ev) => vec![ev],
                            Err(e) => {
                                rejected.push(format!("{} at byte {at}: {e}", self.key));
                                Vec::new()
                            }
                        },
                        f => {
                            let p = parse_document(line, f);
                            for e in p.errors {
                                rejected.push(format!("{} at byte {at}: {e}", self.key));
                            }
                            for (reason, n) in p.skipped {
                                self.pipeline.record_skipped(&self.source, reason, n);
                            }
                            p.events
                        }
                    };
                    for ev in read {
                        match plausible::check_audit_event(&ev, now) {
                            Ok(()) => events.push(ev),
                            Err(e) => {
                                implausible += 1;
                                tracing::warn!(reason = %e, "{} at byte {at}: audit event refused", self.key);
                            }
                        }
                    }
                }
                consumed += end;
                if events.len() + rejected.len() + implausible as usize >= BATCH_LINES {
                    break;
                }
            }
            if consumed > 0 {
                for r in &rejected {
                    tracing::warn!(reason = %r, "rejected audit log line");
                }
                if implausible > 0 {
                    self.pipeline
                        .record_rejected(&self.source, plausible::REASON, implausible)
                        .await?;
                }
                if !rejected.is_empty() {
                    self.pipeline
                        .record_rejected(&self.source, "malformed_line", rejected.len() as u64)
                        .await?;
                }
                let offset = o.offset + consumed as u64;
                self.pipeline
                    .ingest_audit(
                        &self.source,
                        events,
                        Some(LogOffset {
                            path: self.key.clone(),
                            dev: o.dev,
                            inode: o.inode,
                            offset,
                        }),
                    )
                    .await?;
                o.offset = offset;
                o.pending.drain(..consumed);
                continue; // more complete lines may be pending
            }
            if n == 0 {
                return Ok(any);
            }
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), TailError> {
        tokio::pin!(shutdown);
        let key = self.key.clone();
        let saved = self
            .pipeline
            .store()
            .read(move |c| crate::store::load_log_offset(c, &key))
            .await
            .map_err(PipelineError::from)?;
        let mut cur: Option<Open> = None;
        if let Some(s) = saved {
            let here = std::fs::metadata(&self.path).ok();
            if here
                .as_ref()
                .is_some_and(|m| m.dev() == s.dev && m.ino() == s.inode)
            {
                cur = self.open_at(&self.path, s.offset).await?;
            } else if let Some(old) = self.find_rotated(s.dev, s.inode) {
                tracing::info!(rotated = %old.display(), "finishing rotated audit log after restart");
                if let Some(mut o) = self.open_at(&old, s.offset).await? {
                    self.pump(&mut o, true).await?;
                }
                // Rotated again while we were down: the files in between, oldest first.
                for mid in self.rotated_after(&old, here.as_ref()) {
                    tracing::info!(rotated = %mid.display(), "reading audit log rotated while down");
                    if let Some(mut o) = self.open_at(&mid, 0).await? {
                        self.pump(&mut o, true).await?;
                    }
                }
            } else {
                tracing::warn!(path = %self.path.display(), "saved audit log file is gone; starting the current file at 0");
            }
        }
        loop {
            if cur.is_none() {
                cur = self.open_at(&self.path, 0).await?;
            }
            let mut progressed = false;
            if let Some(o) = cur.as_mut() {
                progressed = self.pump(o, false).await?;
                if !progressed {
                    match std::fs::metadata(&self.path) {
                        Ok(m) if m.dev() == o.dev && m.ino() == o.inode => {
                            if m.len() < o.offset {
                                tracing::info!(path = %self.path.display(), "audit log truncated; reading from 0");
                                cur = self.open_at(&self.path, 0).await?;
                                progressed = true;
                            }
                        }
                        // Rotated (or removed): finish the old file, then switch.
                        _ => {
                            self.pump(o, true).await?;
                            cur = None;
                            progressed = true;
                        }
                    }
                }
            }
            if !progressed {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(self.poll) => {}
                }
            }
        }
    }
}
