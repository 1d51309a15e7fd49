//! Watched credential paths: glob patterns, their user-space match, and their
//! encoding into the kernel's cheap filter maps.
//!
//! Pattern syntax: absolute paths; `*` matches any run of characters inside
//! one path component (never `/`), `?` one character, `{a,b,c}` alternatives
//! (expanded when parsed). Matching is lexical on components: empty and `.`
//! components are ignored, `..` is a plain name (the kubelet's `..data` and
//! `..<timestamp>` folders are matched by `..*`).
//!
//! The kernel filter ([`KernelFilter`]) is a superset of the patterns for
//! canonical absolute paths, so it never loses such a match; user space
//! re-checks every event with [`WatchPatterns::matches`]. On the tracepoint
//! path the kernel sees the bytes the process passed: relative paths and
//! non-canonical spellings (`//`, `/./`, `..`) are not reported there (the
//! LSM/fentry hooks test the resolved path instead). The kernel tests:
//! - a prefix test: the literal start of each pattern (up to the first glob
//!   character, at most [`PREFIX_LEN`] bytes) in an LPM trie, looked up with
//!   the first bytes of the path;
//! - a name test on the last component: exact names (`token`, `config`) and
//!   endings (`.pem`; the last bytes of a long name such as
//!   `controller-manager.conf`), both shorter than [`NAME_LEN`]. A pattern
//!   whose last component ends in a glob character (`*`, `..*`)
//!   marks its prefix [`PREFIX_ANY_NAME`] and the whole filter
//!   `any_name`.

use std::path::{Path, PathBuf};

use credtrail_common::{HEAD_LEN, HEADS, NAME_LEN, PREFIX_ANY_NAME, PREFIX_LEN};

/// The default watched patterns (DESIGN.md).
pub const DEFAULT_PATTERNS: &[&str] = &[
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "/run/secrets/kubernetes.io/serviceaccount/token",
    // LSM/fentry see the resolved path: `token` -> `..data/token` -> `..<timestamp>/token`.
    "/var/run/secrets/kubernetes.io/serviceaccount/..*/token",
    "/run/secrets/kubernetes.io/serviceaccount/..*/token",
    "/var/lib/kubelet/pods/*/volumes/kubernetes.io~projected/*/..*/token",
    "/var/lib/kubelet/pods/*/volumes/kubernetes.io~projected/*/token",
    "/etc/kubernetes/{admin,super-admin,kubelet,controller-manager,scheduler}.conf",
    "/root/.kube/config",
    "/home/*/.kube/config",
    "/var/lib/kubelet/kubeconfig",
    "/etc/rancher/k3s/k3s.yaml",
    "/var/lib/kubelet/pki/*.{pem,crt,key}",
];

/// A pattern that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("watch pattern {0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("watch pattern {0:?} has an unbalanced or nested `{{`")]
    Braces(String),
    #[error("watch pattern {0:?} contains a NUL byte")]
    Nul(String),
    #[error("no watch patterns given")]
    Empty,
}

/// One expanded pattern: its text and its components.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    components: Vec<String>,
}

/// The set of watched path patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPatterns {
    patterns: Vec<Pattern>,
}

impl Default for WatchPatterns {
    fn default() -> Self {
        Self::new(DEFAULT_PATTERNS).expect("default patterns are valid")
    }
}

impl WatchPatterns {
    /// Parses and brace-expands `patterns`.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out: Vec<Pattern> = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.contains('\0') {
                return Err(PatternError::Nul(p.to_owned()));
            }
            if !p.starts_with('/') {
                return Err(PatternError::NotAbsolute(p.to_owned()));
            }
            for text in expand_braces(p).ok_or_else(|| PatternError::Braces(p.to_owned()))? {
                let components = split(&text).map(str::to_owned).collect();
                if !out.iter().any(|q| q.text == text) {
                    out.push(Pattern { text, components });
                }
            }
        }
        if out.is_empty() {
            return Err(PatternError::Empty);
        }
        Ok(Self { patterns: out })
    }

    /// The expanded patterns, in order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.text.as_str())
    }

    /// Whether `path` (absolute, as a process named it) is watched.
    pub fn matches(&self, path: &str) -> bool {
        let comps: Vec<&str> = split(path).collect();
        path.starts_with('/')
            && !path.ends_with('/')
            && self.patterns.iter().any(|p| {
                p.components.len() == comps.len()
                    && p.components
                        .iter()
                        .zip(&comps)
                        .all(|(g, c)| glob_match(g.as_bytes(), c.as_bytes()))
            })
    }

    /// Existing files matching the patterns, looked up below `root` (`/` for
    /// the host, `/proc/<pid>/root` for a container). Returned paths include
    /// `root`. Unreadable folders are skipped.
    pub fn find_existing(&self, root: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for p in &self.patterns {
            let mut level = vec![root.to_path_buf()];
            for (i, comp) in p.components.iter().enumerate() {
                let last = i + 1 == p.components.len();
                let mut next = Vec::new();
                for dir in &level {
                    if !comp.contains(['*', '?']) {
                        let cand = dir.join(comp);
                        if (last && cand.is_file()) || (!last && cand.is_dir()) {
                            next.push(cand);
                        }
                        continue;
                    }
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    for e in entries.flatten() {
                        let name = e.file_name();
                        let Some(name) = name.to_str() else { continue };
                        if !glob_match(comp.as_bytes(), name.as_bytes()) {
                            continue;
                        }
                        let cand = e.path();
                        if (last && cand.is_file()) || (!last && cand.is_dir()) {
                            next.push(cand);
                        }
                    }
                }
                level = next;
            }
            for f in level {
                if !found.contains(&f) {
                    found.push(f);
                }
            }
        }
        found
    }

    /// The kernel-side encoding of these patterns.
    pub fn kernel_filter(&self) -> KernelFilter {
        let mut f = KernelFilter::default();
        let mut prefixes: Vec<(Vec<u8>, u32)> = Vec::new();
        for p in &self.patterns {
            let lit_end = p.text.find(['*', '?']).unwrap_or(p.text.len());
            let prefix: Vec<u8> = p.text.as_bytes()[..lit_end.min(PREFIX_LEN)].to_vec();
            let last = p.components.last().map(String::as_str).unwrap_or("");
            let mut flags = 0;
            match name_rule(last) {
                Some(NameRule::Exact(n)) => push_unique(&mut f.names, n),
                Some(NameRule::Suffix(s)) => push_unique(&mut f.suffixes, s),
                None => {
                    flags |= PREFIX_ANY_NAME;
                    f.any_name = true;
                }
            }
            match prefixes.iter_mut().find(|(q, _)| *q == prefix) {
                Some((_, fl)) => *fl |= flags,
                None => prefixes.push((prefix, flags)),
            }
        }
        // The trie returns only the longest matching prefix: give each prefix
        // the flags of every shorter prefix it extends.
        let snapshot = prefixes.clone();
        for (p, fl) in &mut prefixes {
            for (q, qf) in &snapshot {
                if p.starts_with(q) {
                    *fl |= qf;
                }
            }
        }
        f.prefixes = prefixes;
        f
    }
}

/// The kernel's filter maps, as user space fills them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFilter {
    /// Literal path prefixes (at most [`PREFIX_LEN`] bytes) and their `PREFIX_*` flags.
    pub prefixes: Vec<(Vec<u8>, u32)>,
    /// Exact last-component names (shorter than [`NAME_LEN`]), NUL padded.
    pub names: Vec<[u8; NAME_LEN]>,
    /// Last-component endings (shorter than [`NAME_LEN`]), NUL padded.
    pub suffixes: Vec<[u8; NAME_LEN]>,
    /// Some pattern accepts any file name: the dentry-name test is off.
    pub any_name: bool,
}

impl KernelFilter {
    /// The flags of the longest prefix of `path` (as the LPM trie answers).
    pub fn prefix_flags(&self, path: &[u8]) -> Option<u32> {
        let head = &path[..path.len().min(PREFIX_LEN)];
        self.prefixes
            .iter()
            .filter(|(p, _)| head.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, f)| *f)
    }

    /// Whether the last component `name` passes the name test (the eBPF
    /// `name_passes`): an exact name shorter than [`NAME_LEN`], or a name
    /// ending with one of the endings.
    pub fn name_passes(&self, name: &[u8]) -> bool {
        if self.any_name {
            return true;
        }
        if !name.is_empty() && name.len() < NAME_LEN && self.names.contains(&pad(name)) {
            return true;
        }
        self.suffixes.iter().any(|s| {
            let n = s.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
            name.ends_with(&s[..n])
        })
    }

    /// Bit `n` set when some ending is `n` bytes long (`KernelConfig::suffix_lens`).
    pub fn suffix_lens(&self) -> u32 {
        self.suffixes.iter().fold(0, |m, s| {
            m | 1 << s.iter().position(|&b| b == 0).unwrap_or(NAME_LEN)
        })
    }

    /// The head test (`PathHeads`): for each prefix, its first
    /// [`HEAD_LEN`] bytes as a little-endian `u64` and the mask of the bytes
    /// it has, without duplicates or heads another one already covers.
    /// `None` when there are more than [`HEADS`] (the test is then off).
    pub fn heads(&self) -> Option<Vec<(u64, u64)>> {
        let mut all: Vec<(u64, u64)> = self
            .prefixes
            .iter()
            .map(|(p, _)| {
                let n = p.len().min(HEAD_LEN);
                let (mut value, mut mask) = ([0u8; HEAD_LEN], [0u8; HEAD_LEN]);
                value[..n].copy_from_slice(&p[..n]);
                mask[..n].fill(0xff);
                (u64::from_le_bytes(value), u64::from_le_bytes(mask))
            })
            .collect();
        // Shorter masks first: a head is dropped when a kept one covers it.
        all.sort_by_key(|&(v, m)| (m.count_ones(), v));
        let mut kept: Vec<(u64, u64)> = Vec::new();
        for (v, m) in all {
            if !kept.iter().any(|&(kv, km)| v & km == kv) {
                kept.push((v, m));
            }
        }
        (kept.len() <= HEADS).then_some(kept)
    }

    /// Whether `path` passes the head test with `heads`.
    pub fn head_passes(heads: &[(u64, u64)], path: &[u8]) -> bool {
        let mut b = [0u8; HEAD_LEN];
        let n = path.len().min(HEAD_LEN);
        b[..n].copy_from_slice(&path[..n]);
        let h = u64::from_le_bytes(b);
        heads.iter().any(|&(v, m)| h & m == v)
    }

    /// The whole kernel test on a path (the tracepoint programs' logic): a
    /// model of the eBPF code, used by tests to show the filter is a superset.
    pub fn accepts(&self, path: &str) -> bool {
        let b = path.as_bytes();
        if let Some(heads) = self.heads()
            && !Self::head_passes(&heads, b)
        {
            return false;
        }
        let Some(flags) = self.prefix_flags(b) else {
            return false;
        };
        let name = b.rsplit(|&c| c == b'/').next().unwrap_or(b);
        flags & PREFIX_ANY_NAME != 0 || self.name_passes(name)
    }
}

enum NameRule {
    Exact([u8; NAME_LEN]),
    Suffix([u8; NAME_LEN]),
}

/// How the kernel can test a last component, if it can: a literal name
/// shorter than [`NAME_LEN`] exactly; a longer literal by its last
/// `NAME_LEN - 1` bytes; `<glob>*<literal>` by the literal's last (at most
/// `NAME_LEN - 1`) bytes, e.g. `*.pem` by `.pem`. A component ending in a
/// glob character cannot be tested.
fn name_rule(last: &str) -> Option<NameRule> {
    let b = last.as_bytes();
    if !last.contains(['*', '?']) && !b.is_empty() && b.len() < NAME_LEN {
        return Some(NameRule::Exact(pad(b)));
    }
    let lit = match last.rfind(['*', '?']) {
        Some(i) => &b[i + 1..],
        None => b,
    };
    let ending = &lit[lit.len().saturating_sub(NAME_LEN - 1)..];
    (!ending.is_empty()).then(|| NameRule::Suffix(pad(ending)))
}

fn pad(b: &[u8]) -> [u8; NAME_LEN] {
    let mut out = [0u8; NAME_LEN];
    let n = b.len().min(NAME_LEN);
    out[..n].copy_from_slice(&b[..n]);
    out
}

fn push_unique(v: &mut Vec<[u8; NAME_LEN]>, x: [u8; NAME_LEN]) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// `{a,b}` expansion (not nested); `None` when the braces are unbalanced.
fn expand_braces(p: &str) -> Option<Vec<String>> {
    let Some(open) = p.find('{') else {
        return (!p.contains('}')).then(|| vec![p.to_owned()]);
    };
    let close = open + p[open..].find('}')?;
    let inner = &p[open + 1..close];
    if inner.contains('{') {
        return None;
    }
    let mut out = Vec::new();
    for alt in inner.split(',') {
        let joined = format!("{}{}{}", &p[..open], alt, &p[close + 1..]);
        out.extend(expand_braces(&joined)?);
    }
    Some(out)
}

/// Glob match of one component: `*` any run, `?` one byte.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            back = Some((p, i));
            p += 1;
        } else if let Some((bp, bi)) = back {
            p = bp + 1;
            i = bi + 1;
            back = Some((bp, bi + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const WATCHED: &[&str] = &[
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/run/secrets/kubernetes.io/serviceaccount/token",
        "/run/secrets/kubernetes.io/serviceaccount/..2026_11_23_07_35_47.123456789/token",
        "/var/lib/kubelet/pods/0b6f7a3e-1111-2222-3333-444455556666/volumes/kubernetes.io~projected/kube-api-access-x7k2p/..2026_11_23_07_35_47.123456789/token",
        "/var/lib/kubelet/pods/0b6f7a3e-1111-2222-3333-444455556666/volumes/kubernetes.io~projected/kube-api-access-x7k2p/..data/token",
        "/var/lib/kubelet/pods/0b6f7a3e-1111-2222-3333-444455556666/volumes/kubernetes.io~projected/kube-api-access-x7k2p/token",
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/super-admin.conf",
        "/etc/kubernetes/kubelet.conf",
        "/etc/kubernetes/controller-manager.conf",
        "/etc/kubernetes/scheduler.conf",
        "/root/.kube/config",
        "/home/alice/.kube/config",
        "/var/lib/kubelet/kubeconfig",
        "/etc/rancher/k3s/k3s.yaml",
        "/var/lib/kubelet/pki/kubelet-client-current.pem",
        "/var/lib/kubelet/pki/kubelet.crt",
        "/var/lib/kubelet/pki/kubelet.key",
        "//etc/kubernetes/./admin.conf",
    ];

    const NOT_WATCHED: &[&str] = &[
        "/etc/passwd",
        "/etc/kubernetes/manifests/kube-apiserver.yaml",
        "/etc/kubernetes/admin.conf.bak",
        "/home/alice/.kube/cache/discovery",
        "/home/alice/bob/.kube/config",
        "/var/lib/kubelet/pods/x/volumes/kubernetes.io~configmap/y/token",
        "/var/lib/kubelet/pods/x/volumes/kubernetes.io~projected/y/..data/ca.crt",
        "/var/lib/kubelet/pki/README",
        "var/run/secrets/kubernetes.io/serviceaccount/token",
        "/root/.kube/config/",
        "/",
        "",
    ];

    #[test]
    fn defaults_match_every_watched_path_and_nothing_else() {
        let w = WatchPatterns::default();
        for p in WATCHED {
            assert!(w.matches(p), "{p} should be watched");
        }
        for p in NOT_WATCHED {
            assert!(!w.matches(p), "{p} should not be watched");
        }
    }

    #[test]
    fn kernel_filter_is_a_superset_and_rejects_common_paths() {
        let w = WatchPatterns::default();
        let k = w.kernel_filter();
        for p in WATCHED.iter().filter(|p| !p.contains("//")) {
            assert!(k.accepts(p), "kernel filter must pass {p}");
        }
        // Known limit of the tracepoint path: the kernel compares the bytes
        // the process passed, so a non-canonical spelling escapes it (the
        // LSM/fentry hooks test the resolved path and do not have this gap).
        assert!(!k.accepts("//etc/kubernetes/./admin.conf"));
        for p in [
            "/etc/passwd",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/proc/self/status",
            "/var/lib/dpkg/status",
            "/tmp/token",
            "var/run/secrets/kubernetes.io/serviceaccount/token",
        ] {
            assert!(!k.accepts(p), "kernel filter should reject {p}");
        }
        assert!(!k.any_name, "defaults are all testable by name");
        // The head test: few heads, every watched path passes it, the bulk of
        // a node's opens stop at it.
        let heads = k.heads().expect("the defaults fit in HEADS");
        assert!(heads.len() <= 8, "{} heads", heads.len());
        for p in WATCHED.iter().filter(|p| !p.contains("//")) {
            assert!(KernelFilter::head_passes(&heads, p.as_bytes()), "{p}");
        }
        for p in [
            "/proc/self/status",
            "/usr/lib/libc.so.6",
            "/sys/fs/cgroup",
            "/tmp/x",
            "/dev/null",
        ] {
            assert!(!KernelFilter::head_passes(&heads, p.as_bytes()), "{p}");
        }
        // A head shorter than HEAD_LEN is masked to its length ("/home/").
        assert!(KernelFilter::head_passes(
            &heads,
            b"/home/alice/.kube/config"
        ));
        // Too many distinct heads: the test is off rather than wrong.
        let many: Vec<String> = (0..=HEADS)
            .map(|i| format!("/d{i:02}xxxxx/token"))
            .collect();
        assert!(
            WatchPatterns::new(many)
                .unwrap()
                .kernel_filter()
                .heads()
                .is_none()
        );
        // A head covering another one replaces it.
        let nested = WatchPatterns::new(["/srv/a/token", "/sr*/b/token"]).unwrap();
        assert_eq!(nested.kernel_filter().heads().unwrap().len(), 1);
        // /var/lib/kubelet is shared by several patterns: one 16-byte prefix.
        assert!(k.prefixes.iter().all(|(p, _)| p.len() <= PREFIX_LEN));
        assert_eq!(
            k.prefixes
                .iter()
                .filter(|(p, _)| p == b"/var/lib/kubelet")
                .count(),
            1
        );
        assert!(k.prefixes.iter().any(|(p, _)| p == b"/home/"));
        assert!(k.names.contains(&pad(b"token")));
        assert!(k.names.contains(&pad(b"admin.conf")));
        assert!(k.suffixes.contains(&pad(b"uper-admin.conf")));
        assert!(k.suffixes.contains(&pad(b".pem")));
        assert_eq!(k.suffix_lens(), 1 << 4 | 1 << 15);
        assert!(
            !k.accepts("/etc/kubernetes/other.conf"),
            "exact names, not *.conf"
        );
    }

    #[test]
    fn wildcard_names_set_any_name_on_their_prefix_and_longer_ones() {
        let w = WatchPatterns::new(["/srv/creds/*", "/srv/creds/deep/token"]).unwrap();
        let k = w.kernel_filter();
        assert!(k.any_name);
        assert!(k.accepts("/srv/creds/whatever"));
        // The longer prefix "/srv/creds/deep/" inherits ANY_NAME from "/srv/creds/".
        assert_eq!(k.prefix_flags(b"/srv/creds/deep/x"), Some(PREFIX_ANY_NAME));
        assert!(w.matches("/srv/creds/whatever"));
        assert!(!w.matches("/srv/creds/deep/other"));
    }

    #[test]
    fn bad_patterns_are_named() {
        assert_eq!(
            WatchPatterns::new(["relative/token"]).unwrap_err(),
            PatternError::NotAbsolute("relative/token".into())
        );
        assert!(matches!(
            WatchPatterns::new(["/a/{b,c"]).unwrap_err(),
            PatternError::Braces(_)
        ));
        assert_eq!(
            WatchPatterns::new(Vec::<String>::new()).unwrap_err(),
            PatternError::Empty
        );
    }

    #[test]
    fn find_existing_walks_globs_below_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join(
            "var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~projected/kube-api-access-1/..2026_01_01",
        );
        std::fs::create_dir_all(&tok).unwrap();
        std::fs::write(tok.join("token"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("home/bob/.kube")).unwrap();
        std::fs::write(dir.path().join("home/bob/.kube/config"), "x").unwrap();
        std::fs::write(dir.path().join("home/bob/.kube/other"), "x").unwrap();
        let mut found = WatchPatterns::default().find_existing(dir.path());
        found.sort();
        assert_eq!(
            found,
            vec![dir.path().join("home/bob/.kube/config"), tok.join("token")]
        );
    }

    #[test]
    fn glob_basics() {
        assert!(glob_match(b"..*", b"..data"));
        assert!(!glob_match(b"..*", b"data"));
        assert!(glob_match(b"*.pem", b"a.pem"));
        assert!(!glob_match(b"*.pem", b"a.pem.bak"));
        assert!(glob_match(b"a?c*", b"abcdef"));
        assert!(glob_match(b"*", b""));
    }
}
