//! Process details from `/proc`: parent, exe, command line (redacted), parent comm.

use std::path::Path;

use crate::redact::redact_cmdline;

/// What `/proc/<tgid>` tells about a process (all best effort: the process
/// may be gone by the time the event is read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub ppid: u32,
    pub uid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub cmdline: Vec<String>,
    pub parent_comm: Option<String>,
}

/// Why a `/proc/<pid>/stat` line cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatError {
    #[error("/proc stat line has no \"(comm)\"")]
    NoComm,
    #[error("/proc stat line has no ppid field after the comm")]
    NoPpid,
    #[error("/proc stat ppid {0:?} is not a number")]
    BadPpid(String),
}

/// Parses `pid (comm) state ppid ...`; comm may hold spaces and parentheses,
/// so the fields after it are found from the last `)`.
pub fn parse_stat(line: &str) -> Result<(String, u32), StatError> {
    let open = line.find('(').ok_or(StatError::NoComm)?;
    let close = line.rfind(')').ok_or(StatError::NoComm)?;
    if close < open {
        return Err(StatError::NoComm);
    }
    let comm = line[open + 1..close].to_string();
    let mut fields = line[close + 1..].split_whitespace();
    let _state = fields.next().ok_or(StatError::NoPpid)?;
    let ppid = fields.next().ok_or(StatError::NoPpid)?;
    let ppid = ppid
        .parse()
        .map_err(|_| StatError::BadPpid(ppid.to_string()))?;
    Ok((comm, ppid))
}

/// Reads a process's details below `proc_root` (normally `/proc`).
pub fn proc_info(proc_root: &Path, tgid: u32) -> ProcInfo {
    let dir = proc_root.join(tgid.to_string());
    let mut info = ProcInfo::default();
    if let Some((comm, ppid)) = std::fs::read_to_string(dir.join("stat"))
        .ok()
        .and_then(|s| parse_stat(&s).ok())
    {
        info.comm = Some(comm);
        info.ppid = ppid;
    }
    info.uid = std::fs::read_to_string(dir.join("status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        });
    info.exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    if let Ok(raw) = std::fs::read(dir.join("cmdline")) {
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        info.cmdline = redact_cmdline(&args);
    }
    if info.ppid != 0 {
        info.parent_comm =
            std::fs::read_to_string(proc_root.join(info.ppid.to_string()).join("comm"))
                .ok()
                .map(|s| s.trim_end_matches('\n').to_string());
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        assert_eq!(
            parse_stat("42 (my (odd) comm) S 7 42 42 0").unwrap(),
            ("my (odd) comm".to_string(), 7)
        );
        assert_eq!(parse_stat("42 comm S 7"), Err(StatError::NoComm));
        assert_eq!(parse_stat("42 (c) S"), Err(StatError::NoPpid));
        assert_eq!(
            parse_stat("42 (c) S x"),
            Err(StatError::BadPpid("x".into()))
        );
        assert_eq!(parse_stat("42 )c( S 1"), Err(StatError::NoComm));
    }

    #[test]
    fn own_process_is_read() {
        let me = std::process::id();
        let info = proc_info(Path::new("/proc"), me);
        assert_eq!(info.ppid, std::os::unix::process::parent_id());
        assert_eq!(
            info.exe.as_deref(),
            Some(std::env::current_exe().unwrap().to_str().unwrap())
        );
        assert_eq!(info.cmdline.len(), std::env::args().count());
        assert!(info.parent_comm.is_some());
        assert_eq!(info.uid, Some(unsafe_free_uid()));
        assert_eq!(proc_info(Path::new("/proc"), u32::MAX), ProcInfo::default());
    }

    fn unsafe_free_uid() -> u32 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").unwrap().uid()
    }
}
