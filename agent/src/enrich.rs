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

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use credtrail_proto::model::{
    ApiConnect, CaptureSource, CredentialIdentity, CredentialRead, Loss, Observation,
    ObservationEvent, Process, Workload,
};

use crate::attribution::{CgroupPaths, KubeletPods, parse_cgroup_path, proc_info};
use crate::dedupe::{Decision, Deduper};
use crate::identity::rootfs::open_in_root;
use crate::identity::{self, FileKey, IdentityCache, MAX_CREDENTIAL_BYTES, ReadError, RefReader};
use crate::patterns::WatchPatterns;

/// A watched file was opened (from the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOpen {
    pub time: DateTime<Utc>,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub mnt_ns: u64,
    /// Parent tgid as the kernel saw it (0 = unknown); used when `/proc` no
    /// longer has the process.
    pub ppid: u32,
    pub path: String,
    pub flags: u32,
    /// 0 when the hook cannot know it (tracepoints); then filled by `stat`.
    pub inode: u64,
    pub source: CaptureSource,
}

/// A connect to an API-server endpoint (from the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawConnect {
    pub time: DateTime<Utc>,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub mnt_ns: u64,
    /// Parent tgid as the kernel saw it (0 = unknown).
    pub ppid: u32,
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    pub source: CaptureSource,
}

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

impl From<&crate::run::AgentConfig> for EnrichConfig {
    fn from(c: &crate::run::AgentConfig) -> Self {
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
}

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

    /// One open of a watched file. None when it is the agent's own, or
    /// folded into a report already sent this interval.
    pub fn on_open(&mut self, raw: RawOpen) -> Option<Observation> {
        if raw.tgid == self.own_tgid {
            self.stats.own_events += 1;
            return None;
        }
        if !self.watched(raw.pid, raw.tgid, &raw.path) {
            self.stats.unwatched += 1;
            return None;
        }
        // The tracepoints cannot know the inode: open the file to learn it
        // (the dedupe key needs it: a rotated token is a new file). LSM and
        // fentry give it, so a folded read costs no open at all.
        let mut opened = None;
        let inode = if raw.inode != 0 {
            raw.inode
        } else {
            let o = self.open_as_process(raw.pid, raw.tgid, &raw.path);
            let ino = o
                .as_ref()
                .ok()
                .and_then(|(f, _)| f.metadata().ok())
                .map_or(0, |m| m.ino());
            opened = Some(o);
            ino
        };
        let key: OpenKey = (raw.tgid, raw.path.clone(), inode);
        let reads = match self.dedupe.on_event(&key, raw.time) {
            Decision::Folded => {
                self.stats.folded += 1;
                return None;
            }
            Decision::Report { reads } => reads,
        };
        let opened = opened.unwrap_or_else(|| self.open_as_process(raw.pid, raw.tgid, &raw.path));
        let meta = opened.as_ref().ok().and_then(|(f, _)| f.metadata().ok());
        let credential = self.identify_file(raw.pid, raw.tgid, &raw.path, opened, meta);
        let process = self.process(raw.pid, raw.tgid, raw.ppid, raw.uid, &raw.comm, raw.mnt_ns);
        let workload = self.workload(raw.cgroup_id, raw.tgid);
        let event = ObservationEvent::CredentialRead(CredentialRead {
            source: raw.source,
            process: Some(process),
            workload: Some(workload),
            path: raw.path,
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
        let mut info =
            crate::node::node_info(&self.cfg.node_name, hooks, self.cfg.pod_cidrs.clone());
        for a in &self.cfg.extra_addresses {
            if !info.addresses.contains(a) {
                info.addresses.push(*a);
            }
        }
        Observation {
            id: format!("{}/{}/0", self.cfg.node_name, self.boot_id),
            time: Utc::now(),
            node: self.cfg.node_name.clone(),
            event: ObservationEvent::NodeInfo(info),
        }
    }

    /// Whether the path matches a pattern; a relative path is resolved
    /// against the thread's working directory first.
    fn watched(&self, pid: u32, tgid: u32, path: &str) -> bool {
        if path.starts_with('/') {
            return self.cfg.patterns.matches(path);
        }
        let proc_dir = self.cfg.proc_root.join(tgid.to_string());
        [
            proc_dir.join("task").join(pid.to_string()).join("cwd"),
            proc_dir.join("cwd"),
        ]
        .iter()
        .find_map(|l| std::fs::read_link(l).ok())
        .is_some_and(|cwd| self.cfg.patterns.matches(&cwd.join(path).to_string_lossy()))
    }

    /// Opens the file a process named, as that process sees it: inside the
    /// thread's root (a thread may have its own mount namespace), then the
    /// process's root (both with symlinks resolved in that root), then the
    /// host path; a relative path through the thread's and process's cwd.
    fn open_as_process(
        &self,
        pid: u32,
        tgid: u32,
        path: &str,
    ) -> Result<(File, String), ReadError> {
        let proc_dir = self.cfg.proc_root.join(tgid.to_string());
        let task_dir = proc_dir.join("task").join(pid.to_string());
        let mut last = None;
        let mut note = |shown: String, r: std::io::Result<File>| match r {
            Ok(f) => Some((f, shown)),
            Err(source) => {
                last = Some(ReadError::Open {
                    path: shown,
                    source,
                });
                None
            }
        };
        if path.starts_with('/') {
            for root in [task_dir.join("root"), proc_dir.join("root")] {
                let shown = format!("{}{path}", root.display());
                if let Some(ok) = note(shown, open_in_root(&root, path)) {
                    return Ok(ok);
                }
            }
            if let Some(ok) = note(path.to_string(), File::open(path)) {
                return Ok(ok);
            }
        } else {
            for cwd in [task_dir.join("cwd"), proc_dir.join("cwd")] {
                let p = cwd.join(path);
                if let Some(ok) = note(p.display().to_string(), File::open(&p)) {
                    return Ok(ok);
                }
            }
        }
        Err(last.unwrap_or(ReadError::Open {
            path: path.to_string(),
            source: std::io::ErrorKind::NotFound.into(),
        }))
    }

    fn identify_file(
        &mut self,
        pid: u32,
        tgid: u32,
        path: &str,
        opened: Result<(File, String), ReadError>,
        meta: Option<std::fs::Metadata>,
    ) -> CredentialIdentity {
        let result = opened.and_then(|(file, shown)| {
            let key = meta.as_ref().map(FileKey::of);
            if let Some(id) = key.and_then(|k| self.identities.get(&k)) {
                return Ok(id);
            }
            let mut bytes = identity::read_capped_file(file, &shown, MAX_CREDENTIAL_BYTES)?;
            let proc_dir = self.cfg.proc_root.join(tgid.to_string());
            let refs = ProcRoot {
                roots: [
                    proc_dir.join("task").join(pid.to_string()).join("root"),
                    proc_dir.join("root"),
                ],
                base: Path::new(path).parent().map(Path::to_path_buf),
            };
            let id = identity::identify(path, &bytes, &refs);
            identity::wipe(&mut bytes);
            if let Some(k) = key {
                self.identities.insert(k, &id);
            }
            Ok(id)
        });
        result.unwrap_or_else(|e| {
            self.stats.unreadable += 1;
            CredentialIdentity {
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
        let mut info = proc_info(&self.cfg.proc_root, tgid);
        if ppid != 0 && ppid != info.ppid {
            info.parent_comm =
                std::fs::read_to_string(self.cfg.proc_root.join(ppid.to_string()).join("comm"))
                    .ok()
                    .map(|s| s.trim_end_matches('\n').to_string());
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

/// Resolves files a kubeconfig names, inside the reading process's root;
/// relative names are relative to the kubeconfig's folder (as kubectl does).
struct ProcRoot {
    roots: [PathBuf; 2],
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
        self.roots
            .iter()
            .find_map(|root| open_in_root(root, abs_s).ok())
            .or_else(|| File::open(&abs).ok())
            .and_then(|f| identity::read_capped_file(f, abs_s, MAX_CREDENTIAL_BYTES).ok())
    }
}

#[cfg(test)]
#[path = "enrich_tests.rs"]
mod tests;
