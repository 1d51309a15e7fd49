//! Opening files the way a (hostile) process sees them: the flags of the
//! returned file, what a fake `/proc` link says, symlink chains at the
//! kernel's limit, and a kernel without `openat2`.

use std::os::fd::AsRawFd as _;
use std::os::unix::fs::symlink;

use super::*;
use crate::identity::identity_tests::{mkfifo, without_blocking_on};

#[test]
fn file_types_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f"), "x").unwrap();
    mkfifo(&d.join("p"));
    let _sock = std::os::unix::net::UnixListener::bind(d.join("s")).unwrap();
    symlink("f", d.join("l")).unwrap();
    let name = |p: &Path| file_type_name(&std::fs::symlink_metadata(p).unwrap());
    assert_eq!(name(&d.join("f")), "regular file");
    assert_eq!(name(&d.join("p")), "fifo");
    assert_eq!(name(&d.join("s")), "socket");
    assert_eq!(name(&d.join("l")), "symlink");
    assert_eq!(name(d), "directory");
    assert_eq!(name(Path::new("/dev/null")), "character device");
}

/// The file handed back is non-blocking and closed on exec (no child of
/// the agent inherits a pod's file).
#[test]
fn the_opened_file_is_nonblocking_and_close_on_exec() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("token"), "t").unwrap();
    let o = open_in_root(root.path(), "/token").unwrap();
    let fd = o.file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let (fl, fdfl) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
        )
    };
    assert_ne!(fl & libc::O_NONBLOCK, 0, "O_NONBLOCK");
    assert_eq!(fl & libc::O_ACCMODE, libc::O_RDONLY);
    assert_ne!(fdfl & libc::FD_CLOEXEC, 0, "FD_CLOEXEC");
    assert!(o.meta.is_file());
    assert_eq!(o.meta.len(), 1);
    match open_in_root(root.path(), "/missing") {
        Err(RootError::Open { path, source }) => {
            assert_eq!(path, "/missing");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("{other:?}"),
    }
}

/// A FIFO at a token path (a pod can make one) is refused without the
/// agent ever blocking on it, also when reached through a symlink.
#[test]
fn a_fifo_is_refused_without_blocking() {
    let root = tempfile::tempdir().unwrap();
    let fifo = root.path().join("token");
    mkfifo(&fifo);
    symlink("/token", root.path().join("link")).unwrap();
    for path in ["/token", "/link"] {
        let r = root.path().to_owned();
        let got = without_blocking_on(&fifo, path, move || open_in_root(&r, path));
        match got {
            Err(RootError::NotRegular { path: p, file_type }) => {
                assert_eq!((p.as_str(), file_type), (path, "fifo"));
            }
            other => panic!("{path}: a FIFO must be refused: {other:?}"),
        }
    }
}

/// A root that is not a directory fails on the root itself, naming it.
#[test]
fn a_root_that_is_not_a_directory_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("root");
    std::fs::write(&f, "x").unwrap();
    match open_in_root(&f, "/token") {
        Err(RootError::Open { path, source }) => {
            assert_eq!(path, f.display().to_string());
            assert_eq!(source.raw_os_error(), Some(libc::ENOTDIR));
        }
        other => panic!("{other:?}"),
    }
}

/// `/proc/<pid>/root` and `cwd` as links: a chroot's prefix is stripped,
/// a working directory outside the root or deleted is refused.
#[test]
fn paths_relative_to_a_working_directory_are_placed_in_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let link = |name: &str, target: &str| {
        let p = d.join(name);
        symlink(target, &p).unwrap();
        p
    };
    let root = link("root", "/srv/ctr/rootfs");
    let host_root = link("host_root", "/");
    let cwd = link("cwd", "/srv/ctr/rootfs/app/work");
    let at_root = link("cwd_root", "/srv/ctr/rootfs");
    let outside = link("cwd_out", "/srv/other/app");
    let deleted = link("cwd_del", "/srv/ctr/rootfs/app (deleted)");
    let socket = link("fd_sock", "socket:[4242]");
    assert_eq!(
        path_in_root(&root, &cwd, "token").unwrap(),
        "/app/work/token"
    );
    assert_eq!(path_in_root(&root, &at_root, "token").unwrap(), "/token");
    assert_eq!(
        path_in_root(&host_root, &cwd, "../x").unwrap(),
        "/srv/ctr/rootfs/app/work/../x"
    );
    for base in [&outside, &deleted, &socket] {
        assert!(
            matches!(path_in_root(&root, base, "t"), Err(RootError::CwdGone)),
            "{}",
            base.display()
        );
    }
    assert!(matches!(
        path_in_root(&host_root, &deleted, "t"),
        Err(RootError::CwdGone)
    ));
    assert!(matches!(
        path_in_root(&host_root, &socket, "t"),
        Err(RootError::CwdGone)
    ));
}

/// A vanished `/proc/<pid>/fd/<n>` while the process lives is a closed
/// directory descriptor; a vanished cwd, or anything of a vanished process,
/// is the process gone; a link that is no link is an open error.
#[test]
fn a_missing_base_link_says_what_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let proc_pid = dir.path().join("4242");
    std::fs::create_dir_all(proc_pid.join("fd")).unwrap();
    symlink(dir.path(), proc_pid.join("root")).unwrap();
    let root = proc_pid.join("root");
    assert!(matches!(
        path_in_root(&root, &proc_pid.join("fd/7"), "t"),
        Err(RootError::DirfdClosed)
    ));
    assert!(matches!(
        path_in_root(&root, &proc_pid.join("cwd"), "t"),
        Err(RootError::ProcessGone)
    ));
    // The root link still reads, but what it points to is gone.
    let dangling = proc_pid.join("root_gone");
    symlink("/nonexistent-credtrail-root", &dangling).unwrap();
    assert!(matches!(
        path_in_root(&dangling, &proc_pid.join("fd/7"), "t"),
        Err(RootError::ProcessGone)
    ));
    // Not a link at all.
    std::fs::write(proc_pid.join("cwd"), "").unwrap();
    match path_in_root(&root, &proc_pid.join("cwd"), "t") {
        Err(RootError::Open { path, source }) => {
            assert_eq!(path, proc_pid.join("cwd").display().to_string());
            assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
        }
        other => panic!("{other:?}"),
    }
}

/// The kernel follows at most 40 symlinks in one path; so does the
/// canonical resolution, and a longer chain is `ELOOP`.
#[test]
fn symlink_chains_resolve_up_to_the_kernels_limit() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::write(r.join("f"), "x").unwrap();
    symlink("f", r.join("l1")).unwrap();
    for i in 2..=MAX_LINKS + 1 {
        symlink(format!("l{}", i - 1), r.join(format!("l{i}"))).unwrap();
    }
    assert_eq!(canonical_in_root(r, "/l1").unwrap(), "/f");
    assert_eq!(
        canonical_in_root(r, &format!("/l{MAX_LINKS}")).unwrap(),
        "/f"
    );
    match canonical_in_root(r, &format!("/l{}", MAX_LINKS + 1)) {
        Err(RootError::Open { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ELOOP));
        }
        other => panic!("{other:?}"),
    }
    // The kernel agrees.
    assert!(open_in_root(r, &format!("/l{MAX_LINKS}")).is_ok());
    assert!(open_in_root(r, &format!("/l{}", MAX_LINKS + 1)).is_err());
    assert_eq!(MAX_LINKS, 40);
}

/// `.` is dropped wherever it is, not only before an absolute symlink.
#[test]
fn canonical_paths_drop_every_dot() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("run/secrets")).unwrap();
    std::fs::write(r.join("run/secrets/token"), "t").unwrap();
    assert_eq!(
        canonical_in_root(r, "/run/./secrets/./token").unwrap(),
        "/run/secrets/token"
    );
    assert_eq!(
        canonical_in_root(r, "run/secrets/token").unwrap(),
        "/run/secrets/token"
    );
    assert_eq!(canonical_in_root(r, "/").unwrap(), "/");
    assert!(canonical_in_root(r, "/run/missing/token").is_err());
}

/// On a kernel without `openat2` the file is not read at all, never looked
/// up in the agent's own root instead. Simulated on this thread only with a
/// seccomp filter that fails `openat2` with `ENOSYS`.
#[test]
fn without_openat2_nothing_is_read() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("token"), "t").unwrap();
    let r = root.path().to_owned();
    let got = std::thread::spawn(move || {
        deny_openat2_on_this_thread();
        open_in_root(&r, "/token")
    })
    .join()
    .unwrap();
    match got {
        Err(e @ RootError::NoOpenat2 { .. }) => assert_eq!(
            e.to_string(),
            "openat2 is not available (kernel before 5.6): /token not read"
        ),
        other => panic!("{other:?}"),
    }
}

/// Installs, on the calling thread only (no `SECCOMP_FILTER_FLAG_TSYNC`), a
/// filter that makes `openat2` fail with `ENOSYS` and allows the rest.
fn deny_openat2_on_this_thread() {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let nr = u32::try_from(libc::SYS_openat2).unwrap();
    let filter = [
        // seccomp_data.nr is at offset 0.
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: nr,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: RET_ERRNO | u32::try_from(libc::ENOSYS).unwrap(),
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap(),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with a valid, live filter program; affects this thread only.
    unsafe {
        let (one, zero): (libc::c_ulong, libc::c_ulong) = (1, 0);
        assert_eq!(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, one, zero, zero, zero),
            0
        );
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::c_ulong::from(libc::SECCOMP_MODE_FILTER),
                &raw const prog
            ),
            0,
            "installing the seccomp filter"
        );
    }
}
