//! Table output for a terminal. Every value shown may come from an attacker
//! (usernames, user agents and request URIs from the audit stream, notes):
//! control characters (C0, DEL, C1) and bidirectional overrides are shown
//! escaped, never sent to the terminal, and cells are cut to a width.

use std::fmt::Write as _;

use serde_json::Value;

/// Characters that reorder text (Trojan Source): shown escaped.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `s` with control and bidi characters escaped (`\n`, `\u{1b}`).
pub fn safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\n' {
            out.push_str("\\n");
        } else if c == '\t' {
            out.push_str("\\t");
        } else if c.is_control() || is_bidi(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A JSON value as cell text (strings without quotes), made safe.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => safe(s),
        other => safe(&other.to_string()),
    }
}

/// `s` cut to `width` characters (with `…` when cut).
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Rows under a header, columns padded to their widest cell (at most `max`).
pub fn render(header: &[&str], rows: &[Vec<String>], max: usize) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c, max)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, r: &[String]| {
        let mut l = String::new();
        for (i, c) in r.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(c.chars().count());
            l.push_str(c);
            if i + 1 < r.len() {
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(
        &mut out,
        &header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    for r in &cells {
        line(&mut out, r);
    }
    out
}

/// The alerts of a list answer as a table.
pub fn alerts(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["alerts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            vec![
                text(&a["time"]),
                text(&a["severity"]),
                text(&a["rule"]),
                text(&a["triage"]["status"]),
                text(&a["triage"]["assignee"]),
                text(&a["identity"]["username"]),
                text(&a["source_ip"]),
                text(&a["id"]),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "TIME", "SEVERITY", "RULE", "STATUS", "ASSIGNEE", "IDENTITY", "SOURCE", "ID",
        ],
        &rows,
        64,
    );
    if let Some(t) = list["next_page_token"].as_str() {
        let _ = writeln!(out, "(more: --page-token {})", safe(t));
    }
    out
}

/// One alert (the detail answer, or a triage answer's `triage`) as
/// `key: value` lines and its triage history.
pub fn alert(a: &Value) -> String {
    let mut out = String::new();
    for (label, v) in [
        ("id", &a["id"]),
        ("rule", &a["rule"]),
        ("analytic", &a["analytic"]),
        ("severity", &a["severity"]),
        ("time", &a["time"]),
        ("identity", &a["identity"]["username"]),
        ("credential", &a["credential_id"]),
        ("source", &a["source_ip"]),
        ("source class", &a["source_class"]),
        ("request", &a["request"]["request_uri"]),
        ("verb", &a["request"]["verb"]),
        ("reason", &a["reason"]),
        ("suppressed by", &a["suppressed_by"]),
        ("runbook", &a["runbook_url"]),
    ] {
        if !v.is_null() {
            let _ = writeln!(out, "{label:>14}: {}", text(v));
        }
    }
    out.push_str(&triage(&a["triage"]));
    out
}

/// A triage object: status, assignee, last change, history.
pub fn triage(t: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:>14}: {}", "status", text(&t["status"]));
    let _ = writeln!(out, "{:>14}: {}", "assignee", text(&t["assignee"]));
    if !t["updated_at"].is_null() {
        let _ = writeln!(
            out,
            "{:>14}: {} by {}",
            "updated",
            text(&t["updated_at"]),
            text(&t["updated_by"])
        );
    }
    if let Some(h) = t["history"].as_array().filter(|h| !h.is_empty()) {
        let _ = writeln!(out, "{:>14}:", "history");
        let rows: Vec<Vec<String>> = h
            .iter()
            .map(|c| {
                let assignee = match c.get("assignee") {
                    None => String::new(),
                    Some(Value::Null) => "(unassigned)".into(),
                    Some(v) => text(v),
                };
                vec![
                    text(&c["at"]),
                    text(&c["by"]),
                    c.get("status").map(text).unwrap_or_default(),
                    assignee,
                    c.get("note").map(text).unwrap_or_default(),
                ]
            })
            .collect();
        for l in render(&["AT", "BY", "STATUS", "ASSIGNEE", "NOTE"], &rows, 120).lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_and_bidi_overrides_are_escaped() {
        let s = safe("a\u{1b}]0;pwned\u{7}b\u{9b}31m\u{202e}evil\r\nx\u{7f}");
        assert!(!s.chars().any(|c| c.is_control() || is_bidi(c)), "{s:?}");
        assert!(s.contains("\\u{1b}") && s.contains("\\u{202e}") && s.contains("\\n"));
        let t = alerts(&serde_json::json!({"alerts": [
            {"id": "x", "identity": {"username": "eve\u{1b}[2J"}, "triage": {"status": "open"}}
        ]}));
        assert!(!t.contains('\u{1b}'), "{t}");
        assert_eq!(t.lines().count(), 2, "{t}");
    }
}
