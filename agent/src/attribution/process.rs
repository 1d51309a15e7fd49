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
    // From the first `(` to the last `)` after it.
    let (_pid, rest) = line.split_once('(').ok_or(StatError::NoComm)?;
    let (comm, after) = rest.rsplit_once(')').ok_or(StatError::NoComm)?;
    let comm = comm.to_string();
    let mut fields = after.split_whitespace();
    let _state = fields.next().ok_or(StatError::NoPpid)?;
    let ppid = fields.next().ok_or(StatError::NoPpid)?;
    let ppid = ppid
        .parse()
        .map_err(|_| StatError::BadPpid(ppid.to_string()))?;
    Ok((comm, ppid))
}

/// Most bytes of a command line reported (all arguments together).
pub const MAX_CMDLINE_BYTES: usize = 4096;

/// The last argument of a command line cut at [`MAX_CMDLINE_BYTES`].
pub const CMDLINE_TRUNCATED: &str = "[truncated]";

/// At most `max` bytes of a file, and whether there was more.
fn read_bounded(path: &Path, max: usize) -> Option<(Vec<u8>, bool)> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut buf).ok()?;
    let truncated = buf.len() > max;
    buf.truncate(max);
    Some((buf, truncated))
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
    if let Some((raw, truncated)) = read_bounded(&dir.join("cmdline"), MAX_CMDLINE_BYTES) {
        let mut args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if truncated {
            // The cut argument may be the first half of a secret the
            // redaction would have recognised whole: drop it.
            args.pop();
        }
        info.cmdline = redact_cmdline(&args);
        if truncated {
            info.cmdline.push(CMDLINE_TRUNCATED.to_owned());
        }
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
#[path = "process_tests.rs"]
mod process_tests;

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

    #[test]
    fn long_command_lines_are_cut_and_marked() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30", "sh"])
            .args(std::iter::repeat_n("a".repeat(100), 100))
            .spawn()
            .unwrap();
        let pid = child.id();
        let t = std::time::Instant::now();
        let info = loop {
            let info = proc_info(Path::new("/proc"), pid);
            if info.cmdline.len() > 2 || t.elapsed() > std::time::Duration::from_secs(5) {
                break info;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            info.cmdline.last().map(String::as_str),
            Some(CMDLINE_TRUNCATED)
        );
        let bytes: usize = info.cmdline.iter().map(|a| a.len() + 1).sum();
        assert!(
            bytes <= MAX_CMDLINE_BYTES + CMDLINE_TRUNCATED.len() + 1,
            "{bytes}"
        );
        assert!(info.cmdline.len() > 30, "{}", info.cmdline.len());
    }
}
