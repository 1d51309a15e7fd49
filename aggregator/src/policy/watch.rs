//! The policy file reloaded in place (`serve --policy`).
//!
//! In a cluster the file is a ConfigMap mounted as a directory: the kubelet
//! writes each new version into a fresh timestamped directory and swaps the
//! `..data` symlink to it atomically, so the file's own path (a symlink into
//! `..data`) never changes and its inode and mtime are those of the old
//! target until the swap. The watch therefore reads the file through its
//! symlinks and compares the SHA-256 of its *content*, every
//! [`check_interval`] (10 s by default, `--policy-reload-check`).
//!
//! A changed file is read twice, [`SETTLE`] apart, and taken only when both
//! reads agree (an editor writing in place is not read half-way); then it is
//! parsed and validated like at start. A valid policy is put in force
//! ([`crate::pipeline::Pipeline::set_policy`]); an invalid, unreadable or
//! oversized one leaves the previous policy in force, logs why once per
//! distinct content, and counts `credtrail_policy_reloads_total{result="invalid"}`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::Digest as _;

use super::{Policy, PolicyError};

/// Default for [`check_interval`].
pub const DEFAULT_CHECK: Duration = Duration::from_secs(10);
/// Gap between the two reads of a changed file.
pub const SETTLE: Duration = Duration::from_millis(50);
/// Largest policy file read (a real one is a few KiB).
pub const MAX_POLICY_BYTES: u64 = 4 << 20;

static CHECK_MS: AtomicU64 = AtomicU64::new(10_000);

/// How often the policy file is looked at (process-wide); zero: never.
pub fn check_interval() -> Duration {
    Duration::from_millis(CHECK_MS.load(Ordering::Relaxed))
}

/// Sets [`check_interval`] (`--policy-reload-check`; zero turns reloading off).
pub fn set_check_interval(d: Duration) {
    CHECK_MS.store(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// The file's bytes (through its symlinks), at most [`MAX_POLICY_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, PolicyError> {
    let p = path.display().to_string();
    let read_err = |source| PolicyError::Read {
        path: p.clone(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    // A FIFO or a device put where the file should be must not block the
    // watch (opening a FIFO waits for a writer): never wait, regular files only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let f = opts.open(path).map_err(read_err)?;
    if !f.metadata().map_err(read_err)?.is_file() {
        return Err(PolicyError::Invalid {
            path: p,
            problems: vec!["not a regular file".into()],
        });
    }
    let mut out = Vec::new();
    f.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(read_err)?;
    if out.len() as u64 > MAX_POLICY_BYTES {
        return Err(PolicyError::Invalid {
            path: p,
            problems: vec![format!("the file is larger than {MAX_POLICY_BYTES} bytes")],
        });
    }
    Ok(out)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Policy, PolicyError> {
    let p = path.display().to_string();
    let text = std::str::from_utf8(bytes).map_err(|e| PolicyError::Invalid {
        path: p.clone(),
        problems: vec![format!("not UTF-8 text: {e}")],
    })?;
    Policy::from_yaml(&p, text)
}

/// Reads and validates the policy file; with the SHA-256 of its content.
pub fn load(path: &Path) -> Result<(Policy, [u8; 32]), PolicyError> {
    let bytes = read_bounded(path)?;
    Ok((parse(path, &bytes)?, sha256(&bytes)))
}

/// What one look at the file found.
#[derive(Debug)]
pub enum Check {
    /// Same content as last time.
    Unchanged,
    /// The content is changing under us (two reads differ): look again later.
    Unsettled,
    /// A new, valid policy.
    Changed {
        policy: Box<Policy>,
        sha256: [u8; 32],
    },
    /// New content that cannot be used (the previous policy stays).
    Invalid(PolicyError),
}

/// Marks "the file could not be read" as the content last seen, so a missing
/// file is reported once, not at every check.
const UNREADABLE: [u8; 32] = [0xff; 32];

/// One policy file's watch: the content last looked at.
#[derive(Debug)]
pub struct PolicyWatch {
    path: PathBuf,
    seen: [u8; 32],
}

impl PolicyWatch {
    /// `loaded`: the SHA-256 of the content in force.
    pub fn new(path: PathBuf, loaded: [u8; 32]) -> Self {
        Self { path, seen: loaded }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks at the file now (blocking: a small read, plus [`SETTLE`] when it changed).
    pub fn check(&mut self) -> Check {
        let first = match read_bounded(&self.path) {
            Ok(b) => b,
            Err(e) => {
                if self.seen == UNREADABLE {
                    return Check::Unchanged;
                }
                self.seen = UNREADABLE;
                return Check::Invalid(e);
            }
        };
        let digest = sha256(&first);
        if digest == self.seen {
            return Check::Unchanged;
        }
        std::thread::sleep(SETTLE);
        match read_bounded(&self.path) {
            Ok(again) if again == first => {}
            _ => return Check::Unsettled,
        }
        self.seen = digest;
        match parse(&self.path, &first) {
            Ok(policy) => Check::Changed {
                policy: Box::new(policy),
                sha256: digest,
            },
            Err(e) => Check::Invalid(e),
        }
    }

    /// Forgets the content last seen, so the next check takes the file again
    /// (after a valid policy could not be put in force).
    pub fn retry(&mut self) {
        self.seen = [0; 32];
    }
}

/// Watches `watch`'s file until `stop` resolves, putting each valid change
/// in force through `pipeline` and counting every reload.
pub async fn run(
    mut watch: PolicyWatch,
    pipeline: crate::pipeline::Pipeline,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let every = check_interval();
        if every.is_zero() {
            return;
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        let (w, check) = match tokio::task::spawn_blocking(move || {
            let c = watch.check();
            (watch, c)
        })
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "policy check failed; the policy watch stops");
                return;
            }
        };
        watch = w;
        match check {
            Check::Unchanged | Check::Unsettled => {}
            Check::Invalid(e) => {
                metrics.policy_reload("invalid");
                tracing::warn!(
                    path = %watch.path().display(),
                    error = %e,
                    "the policy file changed but cannot be used: the previous policy stays in force"
                );
            }
            Check::Changed { policy, sha256 } => {
                match pipeline.set_policy(*policy, Some(sha256)).await {
                    Ok(generation) => {
                        metrics.policy_reload("ok");
                        tracing::info!(
                            path = %watch.path().display(),
                            sha256 = %hex::encode(sha256),
                            generation,
                            "policy reloaded: new events are judged by it; detection state is kept"
                        );
                    }
                    Err(e) => {
                        metrics.policy_reload("error");
                        watch.retry();
                        tracing::warn!(
                            error = %e,
                            "the new policy could not be stored: the previous policy stays in force; retrying at the next check"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "detection:\n  learning_window: 1h\n";
    const B: &str = "detection:\n  learning_window: 2h\n";

    /// The kubelet's layout: `policy.yaml -> ..data/policy.yaml`,
    /// `..data -> ..<timestamp>`; a new version is a new directory and an
    /// atomic rename of a new `..data` link over the old one.
    #[cfg(unix)]
    fn kubelet_write(dir: &Path, version: u32, text: &str) {
        let ts = dir.join(format!("..2026_11_29_18_00_0{version}.000"));
        std::fs::create_dir(&ts).unwrap();
        std::fs::write(ts.join("policy.yaml"), text).unwrap();
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(ts.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        let file = dir.join("policy.yaml");
        if std::fs::symlink_metadata(&file).is_err() {
            std::os::unix::fs::symlink("..data/policy.yaml", &file).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_swap_is_seen_and_bad_content_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        kubelet_write(dir.path(), 1, A);
        let path = dir.path().join("policy.yaml");
        let (p, sha) = load(&path).unwrap();
        assert_eq!(p.learning_window, chrono::Duration::hours(1));
        let mut w = PolicyWatch::new(path.clone(), sha);
        assert!(matches!(w.check(), Check::Unchanged));

        kubelet_write(dir.path(), 2, B);
        match w.check() {
            Check::Changed { policy, sha256 } => {
                assert_eq!(policy.learning_window, chrono::Duration::hours(2));
                assert_ne!(sha256, sha);
            }
            other => panic!("the swap was not seen: {other:?}"),
        }
        assert!(matches!(w.check(), Check::Unchanged));

        kubelet_write(dir.path(), 3, "detection:\n  learning_window: [");
        assert!(matches!(
            w.check(),
            Check::Invalid(PolicyError::Yaml { .. })
        ));
        assert!(
            matches!(w.check(), Check::Unchanged),
            "the same bad content is reported once"
        );

        kubelet_write(dir.path(), 4, "cluster:\n  node_cidrs: [\"10.0.0.0/33\"]\n");
        assert!(matches!(
            w.check(),
            Check::Invalid(PolicyError::Invalid { .. })
        ));

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            w.check(),
            Check::Invalid(PolicyError::Read { .. })
        ));
        assert!(matches!(w.check(), Check::Unchanged));
    }

    #[test]
    fn an_oversized_or_binary_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, vec![b' '; MAX_POLICY_BYTES as usize + 1]).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("larger than"));
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("UTF-8"));
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_a_device_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("policy.yaml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Should the open wait for a writer, one comes after 2 s (so the test
        // fails instead of hanging) and says so.
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let writer_path = fifo.clone();
        let writer = std::thread::spawn(move || {
            if finished.recv_timeout(Duration::from_secs(2)).is_ok() {
                return false;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true);
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.custom_flags(libc::O_NONBLOCK);
            }
            let _w = opts.open(&writer_path);
            true
        });
        let e = load(&fifo).unwrap_err().to_string();
        done.send(()).ok();
        assert!(
            !writer.join().unwrap(),
            "opening the FIFO waited for a writer"
        );
        assert!(e.contains("not a regular file"), "{e}");
        let e = load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_file_of_exactly_the_largest_size_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        let mut text = A.to_owned().into_bytes();
        text.resize(MAX_POLICY_BYTES as usize - 1, b' ');
        text.push(b'\n');
        std::fs::write(&path, &text).unwrap();
        let (p, sha) = load(&path).unwrap();
        assert_eq!(p.learning_window, chrono::Duration::hours(1));
        assert_eq!(sha, sha256(&text));
    }

    /// A file whose content differs between the two reads is not taken; the
    /// kernel's UUID file is a regular file that reads differently each time.
    #[cfg(target_os = "linux")]
    #[test]
    fn content_changing_between_the_two_reads_is_left_for_later() {
        let path = PathBuf::from("/proc/sys/kernel/random/uuid");
        let mut w = PolicyWatch::new(path.clone(), [0; 32]);
        assert_eq!(w.path(), path);
        for _ in 0..3 {
            assert!(matches!(w.check(), Check::Unsettled));
        }
    }

    /// After a valid policy could not be put in force, the next look takes
    /// the same file again instead of calling it unchanged.
    #[test]
    fn a_retry_takes_the_same_file_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, B).unwrap();
        let mut w = PolicyWatch::new(path.clone(), [0; 32]);
        assert_eq!(w.path(), path);
        assert!(matches!(w.check(), Check::Changed { .. }));
        assert!(matches!(w.check(), Check::Unchanged));
        w.retry();
        match w.check() {
            Check::Changed { policy, sha256: s } => {
                assert_eq!(policy.learning_window, chrono::Duration::hours(2));
                assert_eq!(s, load(&path).unwrap().1);
            }
            other => panic!("not taken again: {other:?}"),
        }
    }

    /// `run`: each valid change put in force through the pipeline and counted,
    /// an invalid one counted and the previous policy kept; a zero interval
    /// turns the watch off. (The interval is process-wide: one test sets it.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watch_puts_a_changed_file_in_force_until_stopped() {
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, A).unwrap();
        let (policy, sha) = load(&path).unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = crate::store::Store::open_in_memory().unwrap();
        let pipeline = crate::pipeline::Pipeline::with_live_policy(
            store,
            crate::policy::LivePolicy::new(Arc::new(policy), Some(sha)),
            metrics.clone(),
        )
        .unwrap();
        let reloads = |result: &str| {
            let line = format!("credtrail_policy_reloads_total{{result=\"{result}\"}} ");
            metrics
                .encode()
                .lines()
                .find_map(|l| l.strip_prefix(&line).map(str::to_owned))
                .unwrap_or_default()
        };
        let within = |what: &'static str, ok: Box<dyn Fn() -> bool + Send>| async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !ok() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "waited 5 s for {what}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };

        set_check_interval(Duration::ZERO);
        assert!(check_interval().is_zero());
        let off = run(
            PolicyWatch::new(path.clone(), sha),
            pipeline.clone(),
            metrics.clone(),
            std::future::pending(),
        );
        tokio::time::timeout(Duration::from_secs(5), off)
            .await
            .expect("a zero interval ends the watch");

        set_check_interval(Duration::from_millis(10));
        assert_eq!(check_interval(), Duration::from_millis(10));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            PolicyWatch::new(path.clone(), sha),
            pipeline.clone(),
            metrics.clone(),
            async move {
                stopped.await.ok();
            },
        ));
        let live = pipeline.live_policy().clone();
        std::fs::write(&path, B).unwrap();
        let l = live.clone();
        within(
            "the new file in force",
            Box::new(move || l.generation() == 1),
        )
        .await;
        assert_eq!(
            pipeline.policy().learning_window,
            chrono::Duration::hours(2)
        );
        assert_eq!(live.sha256(), hex::encode(sha256(B.as_bytes())));
        assert_eq!(reloads("ok"), "1");

        std::fs::write(&path, "detection:\n  learning_window: 5x\n").unwrap();
        let m = metrics.clone();
        within(
            "the invalid file counted",
            Box::new(move || {
                m.encode()
                    .contains("credtrail_policy_reloads_total{result=\"invalid\"} 1")
            }),
        )
        .await;
        assert_eq!(live.generation(), 1, "the previous policy stays");
        assert_eq!(
            pipeline.policy().learning_window,
            chrono::Duration::hours(2)
        );

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watch stops when told")
            .unwrap();
        set_check_interval(DEFAULT_CHECK);
    }
}
