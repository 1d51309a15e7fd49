//! `cargo xtask image --test`: the images run with podman and runc.
//!
//! 1. The aggregator image, read-only root, as uid 65532, answers `/readyz`.
//! 2. The agent image as the DaemonSet runs it: only the DaemonSet's
//!    capabilities (`deploy/manifests/agent-daemonset.yaml`), host PID, its
//!    own network namespace (`--network none`), the same read-only host
//!    mounts, a read-only root, `NODE_IP` as the downward API sets it, under
//!    the shipped seccomp profile: it loads its programs (the BPF LSM hook
//!    where the host runs it), reports the downward address as the node's
//!    (never its namespace's), and reports a token read by `cat` in another
//!    container (another cgroup), without the token's bytes.
//! 3. The same under the runtime's default seccomp profile: it exits with an
//!    error naming the fix.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::{ImageSpec, Store, output};

/// Longest wait for a container to be ready or to report (the machine may be busy).
const WAIT: Duration = Duration::from_secs(30);
/// The address the test's "downward API" gives the agent.
const NODE_IP: &str = "192.0.2.10";
/// Capabilities the DaemonSet adds (checked against the manifest below).
const DAEMONSET_CAPS: &[&str] = &[
    "BPF",
    "PERFMON",
    "SYS_RESOURCE",
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
];
/// A JWT-shaped token (not a real credential) the reader container opens.
const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImN0LXRlc3QifQ.eyJhdWQiOlsiaHR0cHM6Ly9rdWJlcm5ldGVzLmRlZmF1bHQuc3ZjIl0sImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMuZGVmYXVsdC5zdmMiLCJqdGkiOiJjdC1pbWFnZS10ZXN0Iiwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50OmN0OnJlYWRlciJ9.c2lnbmF0dXJlLW5vdC1jaGVja2Vk";

/// Removes the named containers when dropped (also on failure).
struct Cleanup<'a> {
    store: &'a Store,
    names: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self
                .store
                .podman()
                .args(["rm", "-f", "-t", "2", n])
                .output();
        }
    }
}

pub fn test(
    ws: &Path,
    store: &Store,
    version: &str,
    agent: &ImageSpec,
    aggregator: &ImageSpec,
) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the container tests need root (podman with runc, eBPF in the agent container)");
    }
    let started = Instant::now();
    let tag = |repo: &str| format!("localhost/{repo}:{version}");
    for repo in [&agent.repository, &aggregator.repository] {
        output(store.podman().args(["image", "exists", &tag(repo)]))
            .with_context(|| format!("{} is not built: run `cargo xtask image`", tag(repo)))?;
    }
    let tmp = ws.join(format!("target/containers/test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let suffix = std::process::id();
    let mut cleanup = Cleanup {
        store,
        names: Vec::new(),
    };
    let reader = reader_image(store, &tmp)?;

    aggregator_serves_readyz(
        store,
        &tag(&aggregator.repository),
        &tmp,
        suffix,
        &mut cleanup,
    )?;
    println!("image test: the aggregator image serves /readyz");

    check_daemonset_capabilities(ws)?;
    let profile = ws.join("deploy/seccomp/credtrail-agent.json");
    agent_reports_a_token_read_in_another_container(
        store,
        &tag(&agent.repository),
        &reader,
        &profile,
        &tmp,
        suffix,
        &mut cleanup,
    )?;
    agent_under_the_default_profile_names_the_fix(store, &tag(&agent.repository), &tmp)?;
    println!(
        "image test: the agent image under the runtime's default seccomp profile exits naming the fix"
    );
    drop(cleanup);
    let _ = std::fs::remove_dir_all(&tmp);
    println!(
        "image test: passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A throwaway image with a static busybox: the "other pod" that reads a token.
fn reader_image(store: &Store, tmp: &Path) -> anyhow::Result<String> {
    let tag = "localhost/credtrail-test/reader:latest";
    if output(store.podman().args(["image", "exists", tag])).is_ok() {
        return Ok(tag.to_owned());
    }
    let busybox = PathBuf::from(output(
        Command::new("sh").args(["-c", "command -v busybox"]),
    )?);
    super::check_static(&busybox).context("the reader image needs busybox-static")?;
    let ctr = output(store.buildah().args(["from", "scratch"]))?;
    let r = (|| {
        output(
            store
                .buildah()
                .arg("copy")
                .arg(&ctr)
                .arg(&busybox)
                .arg("/bin/busybox"),
        )?;
        output(
            store
                .buildah()
                .args(["config", "--entrypoint", "[\"/bin/busybox\"]", &ctr]),
        )?;
        output(store.buildah().args(["commit", "--rm", &ctr, tag]))
    })();
    if r.is_err() {
        let _ = store.buildah().args(["rm", &ctr]).output();
    }
    r?;
    let _ = tmp;
    Ok(tag.to_owned())
}

/// Limits runc may set without CAP_SYS_RESOURCE (lowering only): podman's
/// defaults raise them, which a runtime without that capability cannot do.
fn ulimits() -> Vec<String> {
    vec![
        "--ulimit".into(),
        "nofile=4096:4096".into(),
        "--ulimit".into(),
        "nproc=4096:4096".into(),
    ]
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn http_status(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.take(4096).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().map(str::to_owned)
}

fn logs(store: &Store, name: &str) -> (String, String) {
    store
        .podman()
        .args(["logs", name])
        .output()
        .map(|o| {
            (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap_or_default()
}

fn running(store: &Store, name: &str) -> bool {
    output(
        store
            .podman()
            .args(["inspect", "--format", "{{.State.Running}}", name]),
    )
    .is_ok_and(|s| s == "true")
}

fn aggregator_serves_readyz(
    store: &Store,
    image: &str,
    tmp: &Path,
    suffix: u32,
    cleanup: &mut Cleanup<'_>,
) -> anyhow::Result<()> {
    let data = tmp.join("aggregator-data");
    std::fs::create_dir_all(&data)?;
    std::os::unix::fs::chown(&data, Some(65532), Some(65532))?;
    let port = free_port()?;
    let name = format!("credtrail-test-aggregator-{suffix}");
    cleanup.names.push(name.clone());
    // Host network, bound to loopback only: no other network is touched.
    output(
        store
            .podman()
            .args([
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "host",
                "--read-only",
            ])
            .args(["--cap-drop", "all", "--security-opt", "no-new-privileges"])
            .args(ulimits())
            .arg("-v")
            .arg(format!("{}:/var/lib/credtrail", data.display()))
            .arg(image)
            .args(["serve", "--webhook-listen", "off", "--agent-listen", "off"])
            .args(["--grpc-listen", "off", "--api-listen"])
            .arg(format!("127.0.0.1:{port}"))
            // Only /readyz is asked (open without a token); the query API
            // stays on loopback in the host's network namespace.
            .arg("--api-insecure-no-auth"),
    )?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + WAIT;
    loop {
        let status = http_status(addr, "/readyz");
        if status.as_deref().is_some_and(|s| s.contains(" 200 ")) {
            break;
        }
        if Instant::now() > deadline || !running(store, &name) {
            let (out, err) = logs(store, &name);
            bail!(
                "the aggregator container did not answer /readyz with 200 (last: {status:?}); logs:\n{out}{err}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !data.join("credtrail.db").exists() {
        bail!("the aggregator did not create its database in the volume");
    }
    Ok(())
}

/// The capabilities the test grants are the DaemonSet's, no more.
fn check_daemonset_capabilities(ws: &Path) -> anyhow::Result<()> {
    let ds = std::fs::read_to_string(ws.join("deploy/manifests/agent-daemonset.yaml"))?;
    let lines: Vec<&str> = ds.lines().map(str::trim).collect();
    let start = lines
        .windows(2)
        .position(|w| w == ["drop: [ALL]", "add:"])
        .context("no added capabilities in the DaemonSet")?;
    let mut caps: Vec<&str> = lines[start + 2..]
        .iter()
        .map_while(|l| l.strip_prefix("- "))
        .collect();
    caps.sort_unstable();
    let mut ours = DAEMONSET_CAPS.to_vec();
    ours.sort_unstable();
    if caps != ours {
        bail!("the DaemonSet adds {caps:?}, the container test {ours:?}");
    }
    Ok(())
}

/// `podman run` arguments of the agent as the DaemonSet runs it.
fn agent_args(pods: &Path, seccomp: Option<&Path>) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--pid=host".into(),
        "--network=none".into(),
        "--read-only".into(),
        "--security-opt=no-new-privileges".into(),
        "--cap-drop=all".into(),
    ];
    // CAP_SYS_RESOURCE is missing from this machine's bounding set when the
    // test runs inside a restricted container; runc cannot grant it then.
    for c in DAEMONSET_CAPS {
        if *c != "SYS_RESOURCE" || in_bounding_set(24) {
            a.push(format!("--cap-add={c}"));
        }
    }
    if let Some(p) = seccomp {
        a.push(format!("--security-opt=seccomp={}", p.display()));
    }
    a.extend(ulimits());
    for (host, path) in [
        ("/proc", "/host/proc"),
        ("/sys/kernel/btf", "/sys/kernel/btf"),
        ("/sys/kernel/tracing", "/sys/kernel/tracing"),
        ("/sys/fs/cgroup", "/sys/fs/cgroup"),
        ("/sys/kernel/security", "/sys/kernel/security"),
    ] {
        a.push(format!("--volume={host}:{path}:ro"));
    }
    a.push(format!(
        "--volume={}:/var/lib/kubelet/pods:ro",
        pods.display()
    ));
    a.push("--env=NODE_NAME=credtrail-test-node".into());
    a.push(format!("--env=NODE_IP={NODE_IP}"));
    a
}

/// Whether capability `cap` is in this process's bounding set.
fn in_bounding_set(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|b| b & (1 << cap) != 0)
}

const AGENT_FLAGS: &[&str] = &[
    "--output",
    "jsonl",
    "-",
    "--proc-root=/host/proc",
    "--cgroup-root=/sys/fs/cgroup",
    "--kubelet-pods-dir=/var/lib/kubelet/pods",
    "--hook=auto",
    "--report-interval=60s",
    "--log-format=json",
];

fn observations(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn agent_reports_a_token_read_in_another_container(
    store: &Store,
    image: &str,
    reader: &str,
    profile: &Path,
    tmp: &Path,
    suffix: u32,
    cleanup: &mut Cleanup<'_>,
) -> anyhow::Result<()> {
    let pods = tmp.join("kubelet-pods");
    let secrets = tmp.join("serviceaccount");
    std::fs::create_dir_all(&pods)?;
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(secrets.join("token"), TOKEN)?;
    let name = format!("credtrail-test-agent-{suffix}");
    cleanup.names.push(name.clone());
    output(
        store
            .podman()
            .args(["run", "-d", "--name", &name])
            .args(agent_args(&pods, Some(profile)))
            .arg(image)
            .args(AGENT_FLAGS),
    )?;
    // Wait for the node info (the first observation, sent once the hooks are attached).
    let deadline = Instant::now() + WAIT;
    let info = loop {
        let (out, err) = logs(store, &name);
        if let Some(i) = observations(&out)
            .into_iter()
            .find(|o| o["type"] == "node_info")
        {
            break i;
        }
        if Instant::now() > deadline || !running(store, &name) {
            bail!("the agent container sent no node info within {WAIT:?}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let hooks: Vec<&str> = info["hooks"]
        .as_array()
        .map(|h| h.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    println!(
        "image test: the agent image runs under the shipped seccomp profile, hooks {hooks:?}, addresses {}",
        info["addresses"]
    );
    if info["addresses"] != serde_json::json!([NODE_IP]) {
        bail!(
            "the agent in its own network namespace reported {} as the node's addresses, not the downward API's [{NODE_IP}]",
            info["addresses"]
        );
    }
    // securityfs is mounted: the LSM hook is judged on the kernel's merits, never refused
    // for want of /sys/kernel/security/lsm (this machine's kernel may refuse it for others).
    let lsm_active = std::fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|l| l.trim().split(',').any(|m| m == "bpf"));
    if lsm_active && !hooks.contains(&"lsm_file_open") {
        let (_, err) = logs(store, &name);
        let why = err
            .lines()
            .find(|l| l.contains("open hook Lsm refused"))
            .unwrap_or("(no reason logged)");
        if why.contains("/sys/kernel/security") {
            bail!("the agent in a container cannot see the active LSMs: {why}");
        }
        println!(
            "image test: the host runs the BPF LSM; the kernel refused the LSM hook for another reason: {}",
            why.chars().take(300).collect::<String>()
        );
    }

    // Another container (its own cgroup and mount namespace) reads a token.
    let reader_name = format!("credtrail-test-reader-{suffix}");
    cleanup.names.push(reader_name.clone());
    output(
        store
            .podman()
            .args([
                "run",
                "--rm",
                "--name",
                &reader_name,
                "--network=none",
                "--read-only",
            ])
            .args(ulimits())
            .arg(format!(
                "--volume={}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
                secrets.display()
            ))
            .arg(reader)
            .args([
                "sh",
                "-c",
                "cat /var/run/secrets/kubernetes.io/serviceaccount/token >/dev/null; sleep 2",
            ]),
    )?;
    let deadline = Instant::now() + WAIT;
    let read = loop {
        let (out, err) = logs(store, &name);
        let found = observations(&out).into_iter().find(|o| {
            o["type"] == "credential_read"
                && o["process"]["comm"] == "cat"
                && o["path"].as_str().is_some_and(|p| {
                    p.starts_with("/var/run/secrets/kubernetes.io/serviceaccount/")
                })
        });
        if let Some(f) = found {
            break f;
        }
        if Instant::now() > deadline || !running(store, &name) {
            bail!(
                "the agent container did not report the reader's token read within {WAIT:?}; stdout:\n{out}\nstderr:\n{err}"
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let cgroup = read["workload"]["cgroup_path"].as_str().unwrap_or("");
    let reader_id = read["workload"]["container_id"].as_str().unwrap_or("");
    println!(
        "image test: the agent reported `cat` in another container reading {} (cgroup {cgroup}, container {reader_id}, credential {})",
        read["path"], read["credential"]["id"]
    );
    if !cgroup.contains("libpod") || cgroup.contains(&name) {
        bail!("the read is not attributed to the reader container's cgroup: {read}");
    }
    let (out, err) = logs(store, &name);
    if out.contains(TOKEN) || err.contains(TOKEN) {
        bail!("the agent's output contains the raw token");
    }
    let signature = TOKEN.rsplit('.').next().unwrap_or(TOKEN);
    if out.contains(signature) || err.contains(signature) {
        bail!("the agent's output contains the token's signature");
    }
    output(store.podman().args(["stop", "-t", "5", &name]))?;
    Ok(())
}

fn agent_under_the_default_profile_names_the_fix(
    store: &Store,
    image: &str,
    tmp: &Path,
) -> anyhow::Result<()> {
    let pods = tmp.join("kubelet-pods");
    let out = store
        .podman()
        .args(["run", "--rm"])
        .args(agent_args(&pods, None))
        .arg(image)
        .args(AGENT_FLAGS)
        .output()
        .context("running the agent container")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        bail!("the agent ran under the default seccomp profile: the test proves nothing here");
    }
    for needle in [
        "Operation not permitted",
        "seccomp",
        "credtrail-agent.json",
        "BPF, PERFMON",
    ] {
        if !stderr.contains(needle) {
            bail!("the agent's error under the default profile does not say {needle:?}:\n{stderr}");
        }
    }
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("seccomp"))
        .unwrap_or_default();
    println!(
        "image test: default profile: {}",
        line.chars().take(300).collect::<String>()
    );
    Ok(())
}
