//! The one set of alert encoders: the export endpoint (`format=`), `replay
//! --format` and push delivery (`deliver/`) all write alerts through here.
//!
//! - [`jsonl`]: the alert as the API shows it, one JSON object per line;
//! - [`cef`]: ArcSight CEF, one record per line;
//! - [`ocsf`]: an OCSF 1.7.0 Detection Finding (class 2004), one per line.

pub mod attack;
pub mod cef;
pub mod jsonl;
pub mod link;
pub mod ocsf;
pub mod ocsf_types;

use crate::alert::Alert;

/// Alert encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The alert JSON of the API, one per line.
    Jsonl,
    /// ArcSight CEF, one record per line.
    Cef,
    /// OCSF Detection Finding (class_uid 2004), one JSON object per line.
    Ocsf,
}

impl Format {
    /// Every format's name, for error messages.
    pub const NAMES: &'static str = "jsonl, cef, ocsf";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "cef" => Some(Format::Cef),
            "ocsf" => Some(Format::Ocsf),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Cef => "cef",
            Format::Ocsf => "ocsf",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl | Format::Ocsf => "application/x-ndjson",
            Format::Cef => "text/plain; charset=utf-8",
        }
    }

    /// File name extension of an export in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Cef => "cef",
            Format::Ocsf => "ocsf.jsonl",
        }
    }

    /// One record (without a newline) for one alert.
    pub fn record(self, a: &Alert) -> String {
        match self {
            Format::Jsonl => jsonl::record(a),
            Format::Cef => cef::cef_line(a),
            Format::Ocsf => ocsf::record(a),
        }
    }

    /// One line (with its newline) for one alert.
    pub fn line(self, a: &Alert) -> String {
        let mut s = self.record(a);
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_is_one_line_and_parses_by_name() {
        let a = cef::tests::alert();
        for f in [Format::Jsonl, Format::Cef, Format::Ocsf] {
            assert_eq!(Format::parse(f.name()), Some(f));
            let line = f.line(&a);
            assert_eq!(line.matches('\n').count(), 1, "{f:?}: {line}");
            assert!(line.ends_with('\n'));
        }
        assert_eq!(Format::parse("xml"), None);
    }
}
