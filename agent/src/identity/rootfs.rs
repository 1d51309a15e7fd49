//! Opening a file the way another process sees it.
//!
//! `/proc/<pid>/root/<path>` is not enough: an absolute symlink on the way
//! (`/var/run -> /run` in most images) would be followed in the *agent's*
//! root. `openat2(RESOLVE_IN_ROOT)` on the process's root directory resolves
//! every component, symlinks included, inside that root, as the process's own
//! open did. Kernels before 5.6 lack openat2: then the plain join is used.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// `struct open_how` (linux/openat2.h); libc's is non-exhaustive.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` (absolute, as the process named it) read-only inside `root`
/// (e.g. `/proc/<pid>/root`).
pub fn open_in_root(root: &Path, path: &str) -> io::Result<File> {
    let rel = path.trim_start_matches('/');
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)?;
    let c = CString::new(if rel.is_empty() { "." } else { rel })
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
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
    if fd >= 0 {
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("fd out of range"))?;
        // SAFETY: the kernel just returned this fd to us; File takes ownership.
        return Ok(unsafe { File::from_raw_fd(fd) });
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOSYS) {
        return File::open(Path::new(root).join(std::ffi::OsStr::from_bytes(rel.as_bytes())));
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("run/secrets")).unwrap();
        std::fs::create_dir_all(r.join("var")).unwrap();
        std::fs::write(r.join("run/secrets/token"), "inside").unwrap();
        // An absolute symlink, as in container images: /var/run -> /run.
        std::os::unix::fs::symlink("/run", r.join("var/run")).unwrap();
        let mut s = String::new();
        open_in_root(r, "/var/run/secrets/token")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
        // `..` cannot climb out of the root: `<root>/run` has no `token`.
        std::fs::write(r.join("token"), "top").unwrap();
        assert!(open_in_root(&r.join("run"), "/../token").is_err());
        assert!(open_in_root(&r.join("run"), "/../../token").is_err());
        assert!(open_in_root(r, "/missing").is_err());
    }
}
