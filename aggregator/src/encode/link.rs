//! Where an alert's credential inventory is (`credential_inventory`): the
//! link every output carries (API, exports, push delivery), next to the
//! encoders so that they need nothing from the API layer.

use serde::Serialize;

use crate::alert::Alert;

/// Where an alert's credential inventory is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryLink {
    pub credential_id: String,
    pub path: String,
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inventory key of an alert's credential: its credential id, else
/// `user:<username>` (as the inventory stores uses).
pub fn credential_key(a: &Alert) -> Option<String> {
    match &a.credential_id {
        Some(c) => Some(c.clone()),
        None if !a.identity.username.is_empty() => {
            let user = a
                .identity
                .impersonated_by
                .as_ref()
                .unwrap_or(&a.identity.username);
            Some(format!("user:{user}"))
        }
        None => None,
    }
}

pub fn link(a: &Alert) -> Option<InventoryLink> {
    credential_key(a).map(|k| InventoryLink {
        path: format!("/api/v1/credentials/{}/inventory", encode_segment(&k)),
        credential_id: k,
    })
}
