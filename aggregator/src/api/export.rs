//! Alert exports a SIEM can take. The encoders live in [`crate::encode`]
//! (shared with `replay --format` and push delivery); this module keeps the
//! names the API and its tests have always used.

pub use crate::encode::Format;
pub(crate) use crate::encode::cef::ext;
pub use crate::encode::cef::{CefRecord, cef_line, cef_severity, parse_cef};
