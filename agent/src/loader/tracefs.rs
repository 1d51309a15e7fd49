//! tracefs: mounted if needed, and the tracepoint record layouts the eBPF
//! programs read at fixed offsets are checked against the running kernel.

use std::path::{Path, PathBuf};

use super::LoadError;

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// The tracefs folder with `events/`, mounting tracefs at
/// `/sys/kernel/tracing` when it is not there yet.
pub fn ensure_mounted() -> Result<PathBuf, LoadError> {
    for dir in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoadError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(PathBuf::from(TRACEFS))
}

/// `(name, offset, size)` of the fields the programs read.
pub const OPENAT_FIELDS: &[(&str, u32, u32)] =
    &[("dfd", 16, 8), ("filename", 24, 8), ("flags", 32, 8)];
pub const OPENAT2_FIELDS: &[(&str, u32, u32)] =
    &[("dfd", 16, 8), ("filename", 24, 8), ("how", 32, 8)];
pub const OPEN_FIELDS: &[(&str, u32, u32)] = &[("filename", 16, 8), ("flags", 24, 8)];
pub const SOCK_STATE_FIELDS: &[(&str, u32, u32)] = &[
    ("skaddr", 8, 8),
    ("oldstate", 16, 4),
    ("newstate", 20, 4),
    ("sport", 24, 2),
    ("dport", 26, 2),
    ("family", 28, 2),
    ("protocol", 30, 2),
    ("saddr", 32, 4),
    ("daddr", 36, 4),
    ("saddr_v6", 40, 16),
    ("daddr_v6", 56, 16),
];

/// Checks `events/<category>/<name>/format` has `fields` where the programs
/// expect them.
pub fn check_format(
    tracefs: &Path,
    category: &str,
    name: &str,
    fields: &[(&str, u32, u32)],
) -> Result<(), LoadError> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = std::fs::read_to_string(&path).map_err(|e| LoadError::Format {
        tracepoint: format!("{category}:{name}"),
        reason: format!("reading {}: {e}", path.display()),
    })?;
    check_format_text(&text, fields).map_err(|reason| LoadError::Format {
        tracepoint: format!("{category}:{name}"),
        reason,
    })
}

/// The check on the text of a `format` file.
pub fn check_format_text(text: &str, fields: &[(&str, u32, u32)]) -> Result<(), String> {
    for (want, off, size) in fields {
        let found = text.lines().find_map(|l| {
            let l = l.trim().strip_prefix("field:")?;
            let (decl, rest) = l.split_once(';')?;
            let fname = decl.rsplit([' ', '*']).next()?;
            let fname = fname.split('[').next()?;
            (fname == *want).then_some(rest)
        });
        let Some(rest) = found else {
            return Err(format!("no field {want}"));
        };
        let num = |key: &str| -> Option<u32> {
            let v = rest.split(';').find_map(|p| p.trim().strip_prefix(key))?;
            v.trim().parse().ok()
        };
        if num("offset:") != Some(*off) || num("size:") != Some(*size) {
            return Err(format!(
                "field {want} is not at offset {off} size {size}: {}",
                rest.trim()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCK: &str = "name: inet_sock_set_state\n\
        \tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n";

    #[test]
    fn format_fields_are_checked() {
        assert_eq!(
            check_format_text(SOCK, &[("skaddr", 8, 8), ("saddr", 32, 4)]),
            Ok(())
        );
        let err = check_format_text(SOCK, &[("skaddr", 16, 8)]).unwrap_err();
        assert!(err.contains("not at offset 16"), "{err}");
        assert_eq!(
            check_format_text(SOCK, &[("daddr", 36, 4)]).unwrap_err(),
            "no field daddr"
        );
    }
}
