//! Opening a file the way another process sees it, without ever blocking
//! and without ever falling back to the agent's own filesystem.
//!
//! `/proc/<pid>/root/<path>` is not enough: an absolute symlink on the way
//! (`/var/run -> /run` in most images) would be followed in the *agent's*
//! root. `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` on a directory
//! descriptor of the process's root resolves every component, symlinks and
//! `..` included, inside that root, as the process's own open did. The file
//! is opened `O_NONBLOCK | O_NOCTTY` (a FIFO or a tty at a watched path can
//! neither block the open nor become our terminal), then `fstat`ed: only a
//! regular file is handed back for reading.
//!
//! Kernels before 5.6 lack `openat2`: the file is then not read at all
//! (a plain join would follow absolute symlinks in the agent's root).

use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// `struct open_how` (linux/openat2.h); libc's is non-exhaustive.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Why a file could not be opened as a process sees it. No variant holds
/// file content.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The process (or its root/cwd) is gone: nothing is guessed.
    #[error("process exited before the file could be read")]
    ProcessGone,
    /// The process's working directory is deleted or outside its root.
    #[error("the process's working directory is gone or outside its root")]
    CwdGone,
    /// The directory descriptor of `openat(dirfd, ...)` was closed before
    /// the agent could resolve it (user-space resolution is after the fact).
    #[error("the directory descriptor was closed before the path could be resolved")]
    DirfdClosed,
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is a {file_type}, not a regular file: not read")]
    NotRegular {
        path: String,
        file_type: &'static str,
    },
    #[error("openat2 is not available (kernel before 5.6): {path} not read")]
    NoOpenat2 { path: String },
}

/// How every path is resolved: inside the process's root (symlinks and
/// `..` included), magic links (`/proc/<pid>/root`, `fd/<n>`) refused.
const RESOLVE_IN_PROCESS_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// A regular file opened inside a process's root, with its metadata.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub meta: Metadata,
}

/// The name of a file type, for reports.
pub fn file_type_name(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Opens a directory of `/proc` (a process's `root` or `cwd` magic link)
/// as an `O_PATH` descriptor; a missing process is [`RootError::ProcessGone`].
fn open_proc_dir(link: &Path) -> Result<File, RootError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(link)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ESRCH) => RootError::ProcessGone,
            _ => RootError::Open {
                path: link.display().to_string(),
                source: e,
            },
        })
}

/// `openat2(dir, rel, how)`.
fn openat2(dir: &File, rel: &str, flags: i32, resolve: u64) -> io::Result<File> {
    let c = CString::new(if rel.is_empty() { "." } else { rel })
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: valid dirfd, NUL-terminated path and a live open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &raw const how,
            std::mem::size_of::<OpenHow>(),
        )
    };
    // The raw system call returns -1 and sets errno on failure.
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this fd to us; File takes ownership.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Opens `path` (absolute, as the process named it) read-only inside the
/// root `root` (e.g. `/proc/<pid>/root`): never blocks, never follows a
/// symlink out of the root, and hands back only a regular file.
pub fn open_in_root(root: &Path, path: &str) -> Result<Opened, RootError> {
    let dir = open_proc_dir(root)?;
    open_at_root(&dir, path)
}

fn open_at_root(dir: &File, path: &str) -> Result<Opened, RootError> {
    let rel = path.trim_start_matches('/');
    let file = openat2(
        dir,
        rel,
        libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK,
        RESOLVE_IN_PROCESS_ROOT,
    )
    .map_err(|source| match source.raw_os_error() {
        Some(libc::ENOSYS) => RootError::NoOpenat2 {
            path: path.to_owned(),
        },
        _ => RootError::Open {
            path: path.to_owned(),
            source,
        },
    })?;
    let meta = file.metadata().map_err(|source| RootError::Open {
        path: path.to_owned(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(RootError::NotRegular {
            path: path.to_owned(),
            file_type: file_type_name(&meta),
        });
    }
    Ok(Opened { file, meta })
}

/// The absolute path, inside the process's root, of a path the process
/// named relative to the directory `base_link` (`/proc/<pid>/cwd` or
/// `/proc/<pid>/fd/<dirfd>`). Both magic links are read as the agent sees
/// them; the process's root link gives the prefix to strip (a chroot).
/// `..` and symlinks are left for [`open_in_root`] to resolve in the root.
pub fn path_in_root(root_link: &Path, base_link: &Path, rel: &str) -> Result<String, RootError> {
    let gone = |e: io::Error| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH) => RootError::ProcessGone,
        _ => RootError::Open {
            path: base_link.display().to_string(),
            source: e,
        },
    };
    let root = std::fs::read_link(root_link).map_err(gone)?;
    let base = std::fs::read_link(base_link).map_err(|e| {
        let is_fd = base_link.parent().and_then(Path::file_name) == Some("fd".as_ref());
        match gone(e) {
            RootError::ProcessGone if is_fd && root_link.exists() => RootError::DirfdClosed,
            other => other,
        }
    })?;
    let base_s = base.to_string_lossy();
    if !base_s.starts_with('/') || base_s.ends_with(" (deleted)") {
        return Err(RootError::CwdGone);
    }
    let inside: PathBuf = if root == Path::new("/") {
        base
    } else {
        match base.strip_prefix(&root) {
            Ok(r) => Path::new("/").join(r),
            Err(_) => return Err(RootError::CwdGone),
        }
    };
    let mut s = inside.to_string_lossy().into_owned();
    if !s.ends_with('/') {
        s.push('/');
    }
    s.push_str(rel);
    Ok(s)
}

/// Most symlinks followed while resolving one path (the kernel's limit).
const MAX_LINKS: usize = 40;

/// The canonical absolute path of `path` inside the root `root` (no `.`,
/// `..`, `//` or symlink left), resolving each component as
/// `RESOLVE_IN_ROOT` would: a symlink's target is read with `readlinkat` on
/// an `O_PATH | O_NOFOLLOW` descriptor opened inside the root, absolute
/// targets restart at the root, `..` stops at the root. Used to match a path
/// the process spelled differently (`/tmp/x` -> a token) against the
/// watched patterns. The file system may change after the process's open:
/// the caller compares the inode.
pub fn canonical_in_root(root: &Path, path: &str) -> Result<String, RootError> {
    let dir = open_proc_dir(root)?;
    let mut out: Vec<String> = Vec::new();
    let mut todo: std::collections::VecDeque<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let mut links_left = MAX_LINKS;
    let open_err = |source: io::Error| RootError::Open {
        path: path.to_owned(),
        source,
    };
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let mut cand = out.join("/");
        if !cand.is_empty() {
            cand.push('/');
        }
        cand.push_str(&c);
        let f = openat2(
            &dir,
            &cand,
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            RESOLVE_IN_PROCESS_ROOT,
        )
        .map_err(open_err)?;
        let meta = f.metadata().map_err(open_err)?;
        if !meta.file_type().is_symlink() {
            out.push(c);
            continue;
        }
        links_left = links_left
            .checked_sub(1)
            .ok_or_else(|| open_err(io::Error::from_raw_os_error(libc::ELOOP)))?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: an O_PATH fd of a symlink, an empty NUL-terminated path
        // (the fd itself), and a buffer of the length passed.
        let n = unsafe {
            libc::readlinkat(
                f.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        // -1 (errno set) is the only negative return.
        let n = usize::try_from(n).map_err(|_| open_err(io::Error::last_os_error()))?;
        buf.truncate(n);
        let target = String::from_utf8_lossy(&buf).into_owned();
        if target.starts_with('/') {
            out.clear();
        }
        for t in target.split('/').filter(|t| !t.is_empty()).rev() {
            todo.push_front(t.to_owned());
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// `path` with `.`, `..` (stopping at `/`) and repeated `/` removed,
/// without touching the file system (symlinks are left as they are).
pub fn lexical_normal(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
#[path = "rootfs_tests.rs"]
mod rootfs_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn read(o: Result<Opened, RootError>) -> String {
        let mut s = String::new();
        o.unwrap().file.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("run/secrets")).unwrap();
        std::fs::create_dir_all(r.join("var")).unwrap();
        std::fs::write(r.join("run/secrets/token"), "inside").unwrap();
        // An absolute symlink, as in container images: /var/run -> /run.
        std::os::unix::fs::symlink("/run", r.join("var/run")).unwrap();
        assert_eq!(read(open_in_root(r, "/var/run/secrets/token")), "inside");
        assert_eq!(
            read(open_in_root(r, "//var/./run/../run/secrets//token")),
            "inside"
        );
        // `..` cannot climb out of the root: `<root>/run` has no `token`.
        std::fs::write(r.join("token"), "top").unwrap();
        assert!(open_in_root(&r.join("run"), "/../token").is_err());
        assert!(open_in_root(&r.join("run"), "/../../token").is_err());
        assert!(open_in_root(r, "/missing").is_err());
        // A magic link is not followed.
        std::os::unix::fs::symlink("/proc/self/root/etc/hostname", r.join("magic")).unwrap();
        assert!(open_in_root(r, "/magic").is_err());
    }

    #[test]
    fn fifos_devices_and_directories_are_not_opened_for_reading() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let fifo = r.join("token");
        crate::identity::identity_tests::mkfifo(&fifo);
        let owned = r.to_owned();
        let got = crate::identity::identity_tests::without_blocking_on(&fifo, "open", move || {
            open_in_root(&owned, "/token")
        });
        match got {
            Err(RootError::NotRegular { file_type, .. }) => assert_eq!(file_type, "fifo"),
            other => panic!("a FIFO must be refused: {other:?}"),
        }
        std::os::unix::fs::symlink("/dev/zero", r.join("zero")).unwrap();
        // Inside the root, /dev/zero does not exist: the symlink stays inside.
        assert!(matches!(
            open_in_root(r, "/zero"),
            Err(RootError::Open { .. })
        ));
        match open_in_root(Path::new("/"), "/dev/zero") {
            Err(RootError::NotRegular { file_type, .. }) => {
                assert_eq!(file_type, "character device")
            }
            other => panic!("a device must be refused: {other:?}"),
        }
        assert!(matches!(
            open_in_root(r, "/"),
            Err(RootError::NotRegular {
                file_type: "directory",
                ..
            })
        ));
    }

    #[test]
    fn a_missing_root_is_process_gone_never_the_host() {
        assert!(matches!(
            open_in_root(Path::new("/proc/999999999/root"), "/etc/hostname"),
            Err(RootError::ProcessGone)
        ));
        assert!(matches!(
            path_in_root(
                Path::new("/proc/999999999/root"),
                Path::new("/proc/999999999/cwd"),
                "token"
            ),
            Err(RootError::ProcessGone)
        ));
        let me = Path::new("/proc/self");
        let cwd = std::env::current_dir().unwrap();
        let p = path_in_root(&me.join("root"), &me.join("cwd"), "x/../token").unwrap();
        assert_eq!(p, format!("{}/x/../token", cwd.display()));
    }

    #[test]
    fn canonical_paths_resolve_symlinks_dots_and_slashes_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("run/secrets/sa/..data")).unwrap();
        std::fs::create_dir_all(r.join("var")).unwrap();
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        std::fs::write(r.join("run/secrets/sa/..data/token"), "t").unwrap();
        std::os::unix::fs::symlink("..data/token", r.join("run/secrets/sa/token")).unwrap();
        std::os::unix::fs::symlink("/run", r.join("var/run")).unwrap();
        std::os::unix::fs::symlink("/var/run/secrets/sa/token", r.join("tmp/x")).unwrap();
        std::os::unix::fs::symlink("../../../../..", r.join("tmp/up")).unwrap();
        let want = "/run/secrets/sa/..data/token";
        for p in [
            "/tmp/x",
            "/var/run/secrets/sa/token",
            "//var/./run/../run/secrets//sa/token",
            "/tmp/up/run/secrets/sa/token",
            "/../../run/secrets/sa/token",
        ] {
            assert_eq!(canonical_in_root(r, p).unwrap(), want, "{p}");
        }
        std::os::unix::fs::symlink("loop", r.join("tmp/loop")).unwrap();
        assert!(canonical_in_root(r, "/tmp/loop").is_err());
        assert_eq!(lexical_normal("//a/./b/../c//d"), "/a/c/d");
        assert_eq!(lexical_normal("/../../a"), "/a");
    }
}
