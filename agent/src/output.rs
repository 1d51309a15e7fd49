//! Local output: one observation per line, JSON (`--output jsonl PATH|-`).
//! The format is `credtrail_proto::model::Observation` serialized with
//! serde_json; docs/OBSERVATIONS.md describes it, and the aggregator's
//! `replay --observations` reads it back.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};

use credtrail_proto::model::Observation;

use crate::cli::OutputTarget;

/// Writes observations as JSON lines, flushing after each batch.
pub struct JsonlWriter {
    out: Box<dyn Write + Send>,
}

impl JsonlWriter {
    /// Opens the target (a file is created or appended to).
    pub fn open(target: &OutputTarget) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            OutputTarget::Stdout => Box::new(std::io::stdout()),
            OutputTarget::File(p) => Box::new(BufWriter::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
        };
        Ok(Self { out })
    }

    /// A writer over any sink (tests).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out }
    }

    /// Writes one line.
    pub fn write(&mut self, obs: &Observation) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, obs)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use credtrail_proto::model::{Loss, ObservationEvent, parse_jsonl_line};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_read_back_as_observations() {
        let sink = Shared::default();
        let mut w = JsonlWriter::new(Box::new(sink.clone()));
        let obs = Observation {
            id: "n/1/1".into(),
            time: chrono::Utc::now(),
            node: "n".into(),
            event: ObservationEvent::Loss(Loss {
                stage: "ring_buffer".into(),
                count: 2,
                total: 5,
            }),
        };
        w.write(&obs).unwrap();
        w.write(&obs).unwrap();
        w.flush().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(parse_jsonl_line(1, lines[0]).unwrap(), obs);
        assert!(lines[0].contains(r#""type":"loss""#), "{}", lines[0]);
    }
}
