//! The agent's documented JSON-lines format (`docs/OBSERVATIONS.md`), read
//! back for replay and for `ingest-observations`.

use credtrail_proto::model::{Observation, parse_jsonl_line};

/// Observations read from a JSON-lines text, and the rejected lines.
#[derive(Debug, Default)]
pub struct ParsedObservations {
    pub observations: Vec<Observation>,
    /// One message per rejected line, naming the line.
    pub errors: Vec<String>,
}

/// Parses agent JSON lines; blank lines are skipped, bad ones reported.
pub fn parse_observations(text: &str) -> ParsedObservations {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = ParsedObservations::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_jsonl_line(i + 1, line) {
            Ok(o) => out.observations.push(o),
            Err(e) => out.errors.push(e.to_string()),
        }
    }
    out
}
