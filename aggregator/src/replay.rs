//! `credtrail-aggregator replay`: detection over saved audit logs (and agents'
//! JSON-lines observations), offline, deterministic.
//!
//! Inputs are merged by time (observations before audit events of the same
//! instant, then in file order), duplicate audit events (same auditID and
//! stage) are judged once, and alerts are returned ordered by (time, id).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use credtrail_proto::model::Observation;

use crate::alert::Alert;
use crate::audit::{AuditEvent, InputFormat, parse_document};
use crate::detect::{Changes, Detector, suppressed_by};
use crate::ingest::jsonl::parse_observations;
use crate::plausible;
use crate::policy::Policy;

/// Errors that make a replay fail.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no audit event could be read ({errors} rejected; first: {first})")]
    NothingReadable {
        path: PathBuf,
        errors: usize,
        first: String,
    },
    #[error("{path}: no observation could be read ({errors} rejected; first: {first})")]
    NoObservations {
        path: PathBuf,
        errors: usize,
        first: String,
    },
}

/// One rejected input item, by file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub path: PathBuf,
    pub error: String,
}

/// What a replay produced.
#[derive(Debug, Default)]
pub struct ReplayOutput {
    /// Alerts ordered by (time, id); suppressed ones only if asked for.
    pub alerts: Vec<Alert>,
    pub events: usize,
    pub duplicates: usize,
    pub observations: usize,
    pub rejected: Vec<Rejected>,
    pub suppressed: usize,
    /// Items deliberately left out by a wrapper format, by reason
    /// (`control_message`, `not_audit_stream`).
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
}

/// Replay inputs.
#[derive(Debug, Clone, Default)]
pub struct ReplayInput {
    pub audit: Vec<PathBuf>,
    pub observations: Vec<PathBuf>,
    pub format: InputFormat,
    pub include_suppressed: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, ReplayError> {
    if path == Path::new("-") {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map_err(|source| {
            ReplayError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        return Ok(v);
    }
    std::fs::read(path).map_err(|source| ReplayError::Read {
        path: path.to_path_buf(),
        source,
    })
}

enum Item {
    Obs(Box<Observation>),
    Audit(Box<AuditEvent>),
}

impl Item {
    fn key(&self) -> (DateTime<Utc>, u8) {
        match self {
            Item::Obs(o) => (o.time, 0),
            Item::Audit(a) => (a.time(), 1),
        }
    }
}

/// Runs detection over the inputs with `policy`.
pub fn replay(input: &ReplayInput, policy: Policy) -> Result<ReplayOutput, ReplayError> {
    let mut out = ReplayOutput::default();
    let mut items = Vec::new();
    // Times outside [2000, now + 1 day] are refused like malformed input.
    let now = Utc::now();
    for p in &input.observations {
        let text = read(p)?;
        let parsed = parse_observations(&String::from_utf8_lossy(&text));
        if parsed.observations.is_empty() && !parsed.errors.is_empty() {
            return Err(ReplayError::NoObservations {
                path: p.clone(),
                errors: parsed.errors.len(),
                first: parsed.errors[0].clone(),
            });
        }
        out.observations += parsed.observations.len();
        out.rejected
            .extend(parsed.errors.into_iter().map(|error| Rejected {
                path: p.clone(),
                error,
            }));
        for o in parsed.observations {
            match plausible::check_observation(&o, now) {
                Ok(()) => items.push(Item::Obs(Box::new(o))),
                Err(e) => out.rejected.push(Rejected {
                    path: p.clone(),
                    error: format!("observation {}: {e}", o.id),
                }),
            }
        }
    }
    for p in &input.audit {
        let bytes = read(p)?;
        let parsed = parse_document(&bytes, input.format);
        if parsed.events.is_empty() && !parsed.errors.is_empty() {
            return Err(ReplayError::NothingReadable {
                path: p.clone(),
                errors: parsed.errors.len(),
                first: parsed.errors[0].to_string(),
            });
        }
        for (k, v) in &parsed.skipped {
            *out.skipped.entry(k).or_default() += v;
        }
        out.rejected
            .extend(parsed.errors.into_iter().map(|e| Rejected {
                path: p.clone(),
                error: e.to_string(),
            }));
        for ev in parsed.events {
            match plausible::check_audit_event(&ev, now) {
                Ok(()) => items.push(Item::Audit(Box::new(ev))),
                Err(e) => out.rejected.push(Rejected {
                    path: p.clone(),
                    error: format!("event {}: {e}", ev.audit_id),
                }),
            }
        }
    }
    // Stable: equal keys keep file order.
    items.sort_by_key(Item::key);
    let mut det = Detector::new(Arc::new(policy));
    let mut seen: HashSet<(String, &'static str)> = HashSet::new();
    let mut changes = Changes::default();
    for it in &items {
        match it {
            Item::Obs(o) => det.observe(o, &mut changes),
            Item::Audit(ev) => {
                if !seen.insert((ev.audit_id.clone(), ev.stage.as_str())) {
                    out.duplicates += 1;
                    continue;
                }
                out.events += 1;
                for a in det.judge(ev, &mut changes) {
                    if suppressed_by(&a).is_some() {
                        out.suppressed += 1;
                        if !input.include_suppressed {
                            continue;
                        }
                    }
                    out.alerts.push(a);
                }
            }
        }
        // Inventory rows are not kept offline.
        changes = Changes::default();
    }
    out.alerts
        .sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    out.alerts.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}
