//! Raw kernel events -> observations: attribution, credential identity, dedupe.
//!
//! [`Enricher`] is synchronous and owned by the agent's event loop. For an
//! open it re-checks the path against the watch patterns (the kernel's filter
//! is a cheap superset), finds the process (kernel ids, then `/proc`), the
//! workload (cgroup id -> path -> container and pod -> namespace/name),
//! opens the credential as the process saw it (`openat2(RESOLVE_IN_ROOT)` in
//! `/proc/<tgid>/task/<pid>/root`, then `/proc/<tgid>/root`, then the host
//! path when the process is gone), identifies it and wipes the bytes, and
//! folds repeated reads ([`crate::dedupe`]). Events of the agent's own process
//! are dropped: its credential reads are opens of watched paths too.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use credtrail_proto::model::{
    ApiConnect, CaptureSource, CredentialIdentity, CredentialRead, Loss, Observation,
    ObservationEvent, Process, Workload,
};

use crate::attribution::{CgroupPaths, KubeletPods, parse_cgroup_path, proc_info};
use crate::config::AgentConfig;
use crate::dedupe::{Decision, Deduper};
use crate::identity::rootfs::{
    Opened, RootError, canonical_in_root, lexical_normal, open_in_root, path_in_root,
};
use crate::identity::{self, FileKey, IdentityCache, MAX_CREDENTIAL_BYTES, ReadError, RefReader};
pub use crate::loader::events::{RawConnect, RawOpen};
use crate::patterns::WatchPatterns;
use crate::pool::{IoPool, PoolError};

/// What the enricher needs to know about the node.
#[derive(Debug, Clone)]
pub struct EnrichConfig {
    pub node_name: String,
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
    pub kubelet_pods_dir: PathBuf,
    pub report_interval: Duration,
    /// Node addresses reported beside the interface addresses.
    pub extra_addresses: Vec<IpAddr>,
    /// This node's pod CIDRs, when known.
    pub pod_cidrs: Vec<String>,
    /// The watched paths. The kernel's filter is a cheap superset; every
    /// open is re-checked here and dropped unless it matches.
    pub patterns: WatchPatterns,
}

impl From<&AgentConfig> for EnrichConfig {
    fn from(c: &AgentConfig) -> Self {
        Self {
            node_name: c.node_name.clone(),
            proc_root: c.proc_root.clone(),
            cgroup_root: c.cgroup_root.clone(),
            kubelet_pods_dir: c.kubelet_pods_dir.clone(),
            report_interval: c.report_interval,
            extra_addresses: c.extra_addresses.clone(),
            pod_cidrs: c.pod_cidrs.clone(),
            patterns: c.patterns.clone(),
        }
    }
}

/// Counters of what could not be enriched (never fatal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnrichStats {
    /// Own-process events dropped.
    pub own_events: u64,
    /// Opens the kernel's superset filter passed that match no pattern.
    pub unwatched: u64,
    /// Reads folded into a later report.
    pub folded: u64,
    /// Credential files that could not be read (the report says why).
    pub unreadable: u64,
    /// cgroup ids with no path under the cgroup root.
    pub unknown_cgroups: u64,
    /// cgroup paths that claimed to be a pod's but did not parse.
    pub bad_cgroup_paths: u64,
    /// Credential identities answered from the cache (no read).
    pub identity_cache_hits: u64,
    /// Events dropped because every I/O worker was busy (a loss).
    pub io_saturated: u64,
}

/// Threads that do the agent's file and `/proc` I/O.
pub const IO_WORKERS: usize = 4;
/// How long one file or `/proc` access may take before it is abandoned.
/// Generous: parsing a kubeconfig and its certificates is part of the job,
/// and emulated or overloaded CPUs are slow; stopping the agent never waits
/// for it.
pub const IO_DEADLINE: Duration = Duration::from_secs(3);

/// Key of one (process, file) pair for dedupe.
type OpenKey = (u32, String, u64);

/// Turns raw events into observations. See the module docs.
#[derive(Debug)]
pub struct Enricher {
    cfg: EnrichConfig,
    own_tgid: u32,
    boot_id: String,
    counter: u64,
    cgroups: CgroupPaths,
    pods: KubeletPods,
    dedupe: Deduper<OpenKey, Observation>,
    identities: IdentityCache,
    io: IoPool,
    stats: EnrichStats,
}

impl Enricher {
    pub fn new(cfg: EnrichConfig) -> Self {
        // Unique per agent start: nanoseconds since the epoch, in hex.
        let boot_id = format!("{:x}", Utc::now().timestamp_nanos_opt().unwrap_or_default());
        Self {
            own_tgid: std::process::id(),
            boot_id,
            counter: 0,
            cgroups: CgroupPaths::new(&cfg.cgroup_root),
            pods: KubeletPods::new(&cfg.kubelet_pods_dir),
            dedupe: Deduper::new(cfg.report_interval),
            identities: IdentityCache::default(),
            io: IoPool::new(IO_WORKERS, IO_DEADLINE).expect("spawning the I/O workers"),
            stats: EnrichStats::default(),
            cfg,
        }
    }

    /// What could not be enriched so far.
    pub fn stats(&self) -> EnrichStats {
        EnrichStats {
            identity_cache_hits: self.identities.hits(),
            ..self.stats
        }
    }

    /// `<node>/<boot id>`: the prefix of every observation id of this run.
    pub fn id_prefix(&self) -> String {
        format!("{}/{}", self.cfg.node_name, self.boot_id)
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{}/{}/{}", self.cfg.node_name, self.boot_id, self.counter)
    }

    fn observation(&mut self, time: DateTime<Utc>, event: ObservationEvent) -> Observation {
        Observation {
            id: self.next_id(),
            time,
            node: self.cfg.node_name.clone(),
            event,
        }
    }

    /// One open of a watched file. None when it is the agent's own, not
    /// watched once resolved, folded into a report already sent this
    /// interval, or refused by a saturated I/O pool (counted in
    /// [`EnrichStats::io_saturated`]).
    pub fn on_open(&mut self, raw: RawOpen) -> Option<Observation> {
        if raw.tgid == self.own_tgid {
            self.stats.own_events += 1;
            return None;
        }
        let at = ProcAt::new(&self.cfg.proc_root, raw.pid, raw.tgid);
        // The path inside the process's root, as the process named it.
        let named = if raw.path.starts_with('/') {
            Ok(raw.path.clone())
        } else {
            let (at2, rel, dirfd) = (at.clone(), raw.path.clone(), raw.dirfd);
            match self.io.run(move || at2.absolute(dirfd, &rel)) {
                Ok(r) => r.map_err(ReadError::from),
                Err(PoolError::Saturated) => {
                    self.stats.io_saturated += 1;
                    return None;
                }
                Err(e) => Err(ReadError::Io {
                    path: raw.path.clone(),
                    source: e,
                }),
            }
        };
        let (path, resolved) = match named {
            Ok(abs) => match self.watched_path(&at, &abs) {
                Some(Watched::Saturated) => {
                    self.stats.io_saturated += 1;
                    return None;
                }
                Some(Watched::Path(p)) => (p, Ok(())),
                None => {
                    self.stats.unwatched += 1;
                    return None;
                }
            },
            // The root or cwd is gone: the name passed the kernel's test,
            // the rest cannot be known. Reported without identity, with why.
            Err(e) => (raw.path.clone(), Err(e)),
        };
        // The tracepoints cannot know the inode: open the file to learn it
        // (the dedupe key needs it: a rotated token is a new file). LSM and
        // fentry give it, so a folded read costs no open at all.
        let mut opened = None;
        let inode = if raw.inode != 0 || resolved.is_err() {
            raw.inode
        } else {
            let o = self.open_as_process(&at, &path);
            let ino = o.as_ref().ok().map_or(0, |o| o.meta.ino());
            opened = Some(o);
            ino
        };
        let key: OpenKey = (raw.tgid, path.clone(), inode);
        let reads = match self.dedupe.on_event(&key, raw.time) {
            Decision::Folded => {
                self.stats.folded += 1;
                return None;
            }
            Decision::Report { reads } => reads,
        };
        let opened = match resolved {
            Err(e) => Err(e),
            Ok(()) => opened.unwrap_or_else(|| self.open_as_process(&at, &path)),
        };
        let credential = self.identify_file(&at, &path, opened);
        let process = self.process(raw.pid, raw.tgid, raw.ppid, raw.uid, &raw.comm, raw.mnt_ns);
        let workload = self.workload(raw.cgroup_id, raw.tgid);
        let event = ObservationEvent::CredentialRead(CredentialRead {
            source: raw.source,
            process: Some(process),
            workload: Some(workload),
            path,
            flags: raw.flags,
            inode,
            reads,
            credential,
        });
        let obs = self.observation(raw.time, event);
        self.dedupe.remember(&key, obs.clone());
        Some(obs)
    }

    /// One connect to an API-server endpoint.
    pub fn on_connect(&mut self, raw: RawConnect) -> Observation {
        let process = self.process(raw.pid, raw.tgid, raw.ppid, raw.uid, &raw.comm, raw.mnt_ns);
        let workload = self.workload(raw.cgroup_id, raw.tgid);
        let event = ObservationEvent::ApiConnect(ApiConnect {
            source: raw.source,
            process: Some(process),
            workload: Some(workload),
            local: raw.local,
            remote: raw.remote,
            // What the API server sees, when the node NATs this connection.
            translated: crate::conntrack::translated(raw.local, raw.remote),
        });
        self.observation(raw.time, event)
    }

    /// Reports whose interval has ended with folded reads still unreported.
    pub fn flush_due(&mut self, now: DateTime<Utc>) -> Vec<Observation> {
        let due = self.dedupe.due(now);
        due.into_iter()
            .map(|d| {
                let mut obs = d.template;
                obs.id = self.next_id();
                obs.time = d.last_seen;
                if let ObservationEvent::CredentialRead(r) = &mut obs.event {
                    r.reads = d.reads;
                }
                obs
            })
            .collect()
    }

    /// A loss report: `count` events lost at `stage` since the last report.
    pub fn loss(&mut self, stage: &str, count: u64, total: u64) -> Observation {
        let event = ObservationEvent::Loss(Loss {
            stage: stage.to_string(),
            count,
            total,
        });
        self.observation(Utc::now(), event)
    }

    /// Start-up scan of credential files already on the node.
    pub fn scan_existing(&mut self, patterns: &WatchPatterns) -> Vec<Observation> {
        let hits = crate::scan::scan(patterns, Path::new("/"), &self.cfg.kubelet_pods_dir);
        hits.into_iter()
            .map(|hit| {
                let workload = hit.pod_uid.map(|uid| {
                    let pod = self.pods.lookup(&uid);
                    Workload {
                        pod_uid: Some(uid),
                        pod_namespace: pod.namespace,
                        pod_name: pod.name,
                        ..Default::default()
                    }
                });
                let event = ObservationEvent::CredentialRead(CredentialRead {
                    source: CaptureSource::Scan,
                    process: None,
                    workload,
                    path: hit.path,
                    flags: 0,
                    inode: hit.inode,
                    reads: 0,
                    credential: hit.credential,
                });
                self.observation(hit.time, event)
            })
            .collect()
    }

    /// The node-info observation, with the hooks in use.
    pub fn node_info(&self, hooks: Vec<String>) -> Observation {
        let info = crate::node::node_info(
            &self.cfg.node_name,
            hooks,
            self.cfg.pod_cidrs.clone(),
            &self.cfg.proc_root,
            &self.cfg.extra_addresses,
        );
        Observation {
            id: format!("{}/{}/0", self.cfg.node_name, self.boot_id),
            time: Utc::now(),
            node: self.cfg.node_name.clone(),
            event: ObservationEvent::NodeInfo(info),
        }
    }

    /// The watched path `abs` (absolute inside the process's root) stands
    /// for: itself with `.`, `..` and `//` removed, else (a symlink the
    /// process made, `/tmp/x` -> a token) its canonical path inside the
    /// root. None when neither matches a pattern.
    fn watched_path(&self, at: &ProcAt, abs: &str) -> Option<Watched> {
        let lexical = lexical_normal(abs);
        if self.cfg.patterns.matches(&lexical) {
            return Some(Watched::Path(lexical));
        }
        let (at, abs) = (at.clone(), abs.to_owned());
        match self.io.run(move || at.canonical(&abs)) {
            Ok(Some(c)) if self.cfg.patterns.matches(&c) => Some(Watched::Path(c)),
            Ok(_) | Err(PoolError::TimedOut) => None,
            Err(PoolError::Saturated) => Some(Watched::Saturated),
        }
    }

    /// Opens the file a process named (absolute inside its root), as that
    /// process sees it: inside the thread's root (a thread may have its own
    /// mount namespace), else the process's root, symlinks resolved in that
    /// root, never on the agent's own file system; only a regular file.
    fn open_as_process(&self, at: &ProcAt, path: &str) -> Result<Opened, ReadError> {
        let (at, p) = (at.clone(), path.to_owned());
        self.io
            .run(move || at.open(&p))
            .map_err(|source| ReadError::Io {
                path: path.to_owned(),
                source,
            })?
    }

    fn identify_file(
        &mut self,
        at: &ProcAt,
        path: &str,
        opened: Result<Opened, ReadError>,
    ) -> CredentialIdentity {
        let result = opened.and_then(|o| {
            let key = FileKey::of(&o.meta);
            if let Some(id) = self.identities.get(&key) {
                return Ok(id);
            }
            // Larger than the cap by its size: refused without reading.
            if o.meta.len() > MAX_CREDENTIAL_BYTES {
                return Err(ReadError::TooLarge {
                    path: path.to_owned(),
                    max: MAX_CREDENTIAL_BYTES,
                });
            }
            let refs = ProcRoot {
                at: at.clone(),
                base: Path::new(path).parent().map(Path::to_path_buf),
            };
            let p = path.to_owned();
            // Read, identify and wipe on a worker: a file system that never
            // answers costs a worker, not the agent.
            let id = self
                .io
                .run(move || {
                    let mut bytes = identity::read_capped_file(o.file, &p, MAX_CREDENTIAL_BYTES)?;
                    let id = identity::identify(&p, &bytes, &refs);
                    identity::wipe(&mut bytes);
                    Ok::<_, ReadError>(id)
                })
                .map_err(|source| ReadError::Io {
                    path: path.to_owned(),
                    source,
                })??;
            self.identities.insert(key, &id);
            Ok(id)
        });
        result.unwrap_or_else(|e| {
            self.stats.unreadable += 1;
            CredentialIdentity {
                kind: e.kind().unwrap_or_default(),
                error: Some(e.to_string()),
                ..Default::default()
            }
        })
    }

    /// The process: the kernel's view (ids, comm, parent at event time),
    /// completed from `/proc` (exe, cmdline, parent comm).
    fn process(
        &mut self,
        pid: u32,
        tgid: u32,
        ppid: u32,
        uid: u32,
        comm: &str,
        mnt_ns: u64,
    ) -> Process {
        // On a worker: reading another process's cmdline takes its memory
        // lock, which that process can hold.
        let root = self.cfg.proc_root.clone();
        let mut info = self
            .io
            .run(move || {
                let mut info = proc_info(&root, tgid);
                if ppid != 0 && ppid != info.ppid {
                    info.parent_comm = read_comm(&root, ppid);
                    info.ppid = ppid;
                }
                info
            })
            .unwrap_or_default();
        if ppid != 0 && info.ppid == 0 {
            info.ppid = ppid;
        }
        Process {
            pid,
            tgid,
            ppid: info.ppid,
            uid,
            comm: comm.to_string(),
            exe: info.exe,
            cmdline: info.cmdline,
            parent_comm: info.parent_comm,
            mnt_ns,
        }
    }

    fn workload(&mut self, cgroup_id: u64, tgid: u32) -> Workload {
        let mut w = Workload {
            cgroup_id,
            ..Default::default()
        };
        let path = match self.cgroups.path_of(cgroup_id) {
            Some(p) => Some(p),
            None => {
                self.stats.unknown_cgroups += 1;
                // The process may still be readable: its cgroup v2 line.
                std::fs::read_to_string(self.cfg.proc_root.join(tgid.to_string()).join("cgroup"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
                    })
            }
        };
        let Some(path) = path else { return w };
        match parse_cgroup_path(&path) {
            Ok(info) => {
                w.container_id = info.container_id;
                w.container_runtime = info.runtime;
                w.qos_class = info.qos_class;
                if let Some(uid) = &info.pod_uid {
                    let pod = self.pods.lookup(uid);
                    w.pod_namespace = pod.namespace;
                    w.pod_name = pod.name;
                }
                w.pod_uid = info.pod_uid;
            }
            Err(e) => {
                self.stats.bad_cgroup_paths += 1;
                tracing::debug!("cgroup {cgroup_id}: {e}");
            }
        }
        w.cgroup_path = Some(path);
        w
    }
}

/// A process's comm from `/proc`, bounded.
fn read_comm(proc_root: &Path, pid: u32) -> Option<String> {
    use std::io::Read as _;
    let f = std::fs::File::open(proc_root.join(pid.to_string()).join("comm")).ok()?;
    let mut s = String::new();
    f.take(64).read_to_string(&mut s).ok()?;
    Some(s.trim_end_matches('\n').to_string())
}

/// What [`Enricher::watched_path`] found.
enum Watched {
    Path(String),
    Saturated,
}

/// Where one process's (and thread's) root and directories are in `/proc`.
#[derive(Debug, Clone)]
struct ProcAt {
    proc_dir: PathBuf,
    task_dir: PathBuf,
}

impl ProcAt {
    fn new(proc_root: &Path, pid: u32, tgid: u32) -> Self {
        let proc_dir = proc_root.join(tgid.to_string());
        let task_dir = proc_dir.join("task").join(pid.to_string());
        Self { proc_dir, task_dir }
    }

    /// The thread's directory, else the process's (the thread may be gone).
    fn dirs(&self) -> [&Path; 2] {
        [&self.task_dir, &self.proc_dir]
    }

    /// Runs `f` on the thread's directory, then the process's, until one
    /// gives something other than [`RootError::ProcessGone`].
    fn first<T>(&self, f: impl Fn(&Path) -> Result<T, RootError>) -> Result<T, RootError> {
        let mut last = RootError::ProcessGone;
        for d in self.dirs() {
            match f(d) {
                Err(RootError::ProcessGone) => last = RootError::ProcessGone,
                other => return other,
            }
        }
        Err(last)
    }

    /// A relative path the process named, made absolute inside its root:
    /// relative to the directory `dirfd` refers to, or to its cwd.
    fn absolute(&self, dirfd: Option<i32>, rel: &str) -> Result<String, RootError> {
        self.first(|d| {
            let base = match dirfd {
                Some(fd) if fd >= 0 => self.proc_dir.join("fd").join(fd.to_string()),
                _ => d.join("cwd"),
            };
            path_in_root(&d.join("root"), &base, rel)
        })
    }

    fn canonical(&self, abs: &str) -> Option<String> {
        self.first(|d| canonical_in_root(&d.join("root"), abs)).ok()
    }

    fn open(&self, abs: &str) -> Result<Opened, ReadError> {
        self.first(|d| open_in_root(&d.join("root"), abs))
            .map_err(ReadError::from)
    }
}

/// Resolves files a kubeconfig names, inside the reading process's root;
/// relative names are relative to the kubeconfig's folder (as kubectl does).
/// Never on the agent's own file system.
struct ProcRoot {
    at: ProcAt,
    base: Option<PathBuf>,
}

impl RefReader for ProcRoot {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        let abs = match (path.starts_with('/'), &self.base) {
            (true, _) => PathBuf::from(path),
            (false, Some(b)) => b.join(path),
            (false, None) => return None,
        };
        let abs_s = abs.to_str()?;
        let o = self.at.open(abs_s).ok()?;
        identity::read_capped_file(o.file, abs_s, MAX_CREDENTIAL_BYTES).ok()
    }
}

#[cfg(test)]
#[path = "enrich_tests.rs"]
mod tests;
