//! Kubernetes audit events: the typed model and the parsers for every form
//! they arrive in (webhook `EventList`, log JSON lines, single events,
//! explicit cloud wrappers).

pub mod eks;
pub mod gke;
pub mod inflate;
mod model;
mod object;
mod parse;

pub use model::*;
pub use object::{MAX_OBJECT_BYTES, object_value, read_object, read_rule, read_subject};
pub use parse::{InputFormat, ParseError, Parsed, parse_document, parse_event, parse_webhook_body};
