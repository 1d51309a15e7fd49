//! Kubernetes cgroup paths: pod uid, QoS class, container id and runtime.
//!
//! The kubelet names pod cgroups one of two ways, by cgroup driver:
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/`
//!   then the runtime's scope: `cri-containerd-<id>.scope`, `crio-<id>.scope`,
//!   `docker-<id>.scope` (`crio-conmon-<id>.scope` for CRI-O's monitor).
//!   Guaranteed pods sit directly under `kubepods.slice` (`kubepods-pod<uid>.slice`).
//!   containerd before 1.5 with the systemd driver wrote
//!   `.../kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`.
//! - cgroupfs: `/kubepods/burstable/pod<uid>/<id>` (`crio-<id>` for CRI-O).
//!
//! Podman (not a Kubernetes runtime, but the way the container tests and many
//! single hosts run containers) names its scopes `libpod-<id>.scope`
//! (`libpod-conmon-<id>.scope` for its monitor), under `machine.slice`
//! (rootful, systemd), `user@<uid>.service/.../` (rootless),
//! `machine-libpod_pod_<pod id>.slice` (a podman pod), `libpod_parent/`
//! (cgroupfs), sometimes with a `/container` leaf below (`--cgroups=split`).
//! Such a path gives the container id and runtime `podman`, and no pod.
//!
//! Folders below the container's cgroup (a container that runs systemd, or
//! one that may write its cgroup and names a folder like another pod's) are
//! the container's own: they neither change nor fail the attribution.
//!
//! Prefixes before `kubepods` (kind's `/kubelet.slice/kubelet-kubepods.slice`,
//! a nested `/system.slice/...`) are tolerated: parsing starts at the first
//! component that names kubepods.
//!
//! Except a user's own subtree: systemd delegates `user.slice/user-<uid>.slice/
//! user@<uid>.service` to that user, who may create any folder below it and
//! move their processes there. A node user without root could otherwise name
//! a folder `kubepods.slice/…-pod<victim uid>.slice/cri-containerd-<id>.scope`
//! and have their API requests attributed to that pod. A kubepods hierarchy
//! below such a component is not a pod (a rootless podman scope there still
//! gives its container). Rootless Kubernetes seen from the host's cgroup
//! namespace is therefore not attributed; the agent runs inside its node.

/// What a cgroup path says about the workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    pub pod_uid: Option<String>,
    /// `guaranteed`, `burstable`, `besteffort`.
    pub qos_class: Option<String>,
    pub container_id: Option<String>,
    /// `containerd`, `crio`, `docker`, `podman`; None when the path does not say (cgroupfs).
    pub runtime: Option<String>,
}

/// Why a cgroup path that claims to be a pod's cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CgroupPathError {
    #[error("cgroup path {0:?} is not absolute")]
    NotAbsolute(String),
    #[error("cgroup path component {component:?}: pod uid {uid:?} is not a UUID")]
    PodUid { component: String, uid: String },
    #[error("cgroup path component {component:?}: container id {id:?} is not 64 hex digits")]
    ContainerId { component: String, id: String },
    #[error("cgroup path component {component:?}: unknown QoS class {qos:?}")]
    Qos { component: String, qos: String },
}

/// Parses a cgroup v2 path (relative to the cgroup root, starting with `/`).
/// A path outside `kubepods` is not an error: it gives an empty [`CgroupInfo`].
pub fn parse_cgroup_path(path: &str) -> Result<CgroupInfo, CgroupPathError> {
    if !path.starts_with('/') {
        return Err(CgroupPathError::NotAbsolute(path.to_string()));
    }
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let Some(start) = comps.iter().position(|c| names_kubepods(c)) else {
        return podman(&comps);
    };
    if comps[..start].iter().any(|c| delegated_to_a_user(c)) {
        return podman(&comps);
    }
    let mut info = CgroupInfo::default();
    for comp in &comps[start..] {
        // Below the container's own cgroup every folder is the container's:
        // a process that may write its cgroup (systemd in a container, a
        // privileged pod) can create one named like another pod's slice or
        // container's scope. It neither changes the attribution nor fails it.
        if info.container_id.is_some() {
            break;
        }
        if let Some(rest) = strip_slice(comp) {
            systemd_component(comp, rest, &mut info)?;
        } else if let Some((slice, scope)) = comp.split_once(':') {
            // `<pod slice>:<runtime>:<id>` (old containerd with the systemd driver).
            let rest = strip_slice(slice).unwrap_or(slice);
            systemd_component(comp, rest, &mut info)?;
            let (runtime, id) = scope.split_once(':').unwrap_or(("", scope));
            info.runtime = runtime_name(runtime).map(str::to_owned);
            info.container_id = Some(container_id(comp, id)?);
        } else {
            cgroupfs_component(comp, &mut info)?;
        }
    }
    if info.pod_uid.is_some() && info.qos_class.is_none() {
        info.qos_class = Some("guaranteed".into());
    }
    Ok(info)
}

/// A podman container's scope (`libpod-<id>[.scope]`, `libpod-conmon-<id>`),
/// the outermost one (folders below it are the container's own, named as it
/// likes); anything else is not a container.
fn podman(comps: &[&str]) -> Result<CgroupInfo, CgroupPathError> {
    for comp in comps {
        let scope = comp.strip_suffix(".scope").unwrap_or(comp);
        let id = scope
            .strip_prefix("libpod-conmon-")
            .or_else(|| scope.strip_prefix("libpod-"));
        if let Some(id) = id {
            return Ok(CgroupInfo {
                container_id: Some(container_id(comp, id)?),
                runtime: Some("podman".into()),
                ..CgroupInfo::default()
            });
        }
    }
    Ok(CgroupInfo::default())
}

/// A component of the subtree systemd delegates to a user (who may create
/// folders below it): `user.slice`, `user-<uid>.slice`, `user@<uid>.service`.
fn delegated_to_a_user(c: &str) -> bool {
    c == "user.slice"
        || (c.starts_with("user-") && c.ends_with(".slice"))
        || (c.starts_with("user@") && c.ends_with(".service"))
}

fn names_kubepods(c: &str) -> bool {
    c == "kubepods" || c.contains("kubepods.slice") || c.contains("kubepods-")
}

fn strip_slice(c: &str) -> Option<&str> {
    c.strip_suffix(".slice")
}

/// `kubepods`, `kubepods-burstable`, `kubepods-burstable-pod<uid>`, `kubelet-kubepods-...`.
fn systemd_component(comp: &str, name: &str, info: &mut CgroupInfo) -> Result<(), CgroupPathError> {
    let Some(idx) = name.find("kubepods") else {
        return Ok(());
    };
    let mut rest = &name[idx + "kubepods".len()..];
    // Each `-` separates one level: qos, then pod.
    while let Some(part) = rest.strip_prefix('-') {
        let (word, tail) = match part.find('-') {
            // A pod uid contains no `-` in systemd names (they become `_`).
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if let Some(uid) = word.strip_prefix("pod") {
            info.pod_uid = Some(pod_uid(comp, &uid.replace('_', "-"))?);
        } else {
            info.qos_class = Some(qos(comp, word)?);
        }
        rest = tail;
    }
    Ok(())
}

fn cgroupfs_component(comp: &str, info: &mut CgroupInfo) -> Result<(), CgroupPathError> {
    if comp == "kubepods" {
        return Ok(());
    }
    if info.pod_uid.is_none() {
        if let Some(uid) = comp.strip_prefix("pod") {
            info.pod_uid = Some(pod_uid(comp, uid)?);
        } else {
            info.qos_class = Some(qos(comp, comp)?);
        }
        return Ok(());
    }
    // Below the pod: the container.
    let scope = comp.strip_suffix(".scope").unwrap_or(comp);
    for (prefix, runtime) in [
        ("cri-containerd-", "containerd"),
        ("crio-conmon-", "crio"),
        ("crio-", "crio"),
        ("docker-", "docker"),
    ] {
        if let Some(id) = scope.strip_prefix(prefix) {
            info.runtime = Some(runtime.into());
            info.container_id = Some(container_id(comp, id)?);
            return Ok(());
        }
    }
    info.container_id = Some(container_id(comp, scope)?);
    Ok(())
}

fn runtime_name(s: &str) -> Option<&'static str> {
    match s {
        "cri-containerd" => Some("containerd"),
        "crio" | "crio-conmon" => Some("crio"),
        "docker" => Some("docker"),
        _ => None,
    }
}

fn qos(comp: &str, word: &str) -> Result<String, CgroupPathError> {
    match word {
        "burstable" | "besteffort" | "guaranteed" => Ok(word.to_string()),
        _ => Err(CgroupPathError::Qos {
            component: comp.to_string(),
            qos: word.to_string(),
        }),
    }
}

fn pod_uid(comp: &str, uid: &str) -> Result<String, CgroupPathError> {
    let groups: Vec<&str> = uid.split('-').collect();
    let ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(uid.to_ascii_lowercase())
    } else {
        Err(CgroupPathError::PodUid {
            component: comp.to_string(),
            uid: uid.to_string(),
        })
    }
}

fn container_id(comp: &str, id: &str) -> Result<String, CgroupPathError> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(CgroupPathError::ContainerId {
            component: comp.to_string(),
            id: id.to_string(),
        })
    }
}

#[cfg(test)]
#[path = "cgroup_path_tests.rs"]
mod cgroup_path_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    const UID_: &str = "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0";
    const ID: &str = "4d9f0c3b8e7a6d5c4b3a29180716f5e4d3c2b1a09f8e7d6c5b4a392817060504";

    fn info(uid: &str, qos: &str, id: Option<&str>, rt: Option<&str>) -> CgroupInfo {
        CgroupInfo {
            pod_uid: Some(uid.into()),
            qos_class: Some(qos.into()),
            container_id: id.map(Into::into),
            runtime: rt.map(Into::into),
        }
    }

    #[test]
    fn systemd_driver_paths() {
        let p = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "besteffort", Some(ID), Some("containerd"))
        );
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
        );
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "burstable", Some(ID), Some("crio"))
        );
        let p = format!("/kubepods.slice/kubepods-pod{UID_}.slice/docker-{ID}.scope");
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "guaranteed", Some(ID), Some("docker"))
        );
        let p = format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope");
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "guaranteed", Some(ID), Some("crio"))
        );
        // Pod-level cgroup: no container yet.
        let p =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "burstable", None, None)
        );
        // kind nests the kubelet's slices under kubelet.slice.
        let p = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "besteffort", Some(ID), Some("containerd"))
        );
        // Old containerd, systemd driver.
        let p = format!(
            "/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID}"
        );
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "burstable", Some(ID), Some("containerd"))
        );
    }

    /// A node user's own cgroup subtree cannot pass for a pod: a folder named
    /// like a victim pod's slice below `user@<uid>.service` attributes nothing
    /// (the same folders at the root still do).
    #[test]
    fn a_pod_hierarchy_in_a_users_subtree_is_not_a_pod() {
        let forged = format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        for prefix in [
            "/user.slice/user-1000.slice/user@1000.service",
            "/user.slice/user-1000.slice/user@1000.service/app.slice",
            "/user.slice/user-1000.slice/session-3.scope",
            "/user.slice",
            // Each delegated component alone (a nested or moved hierarchy).
            "/machine.slice/user-1000.slice",
            "/machine.slice/user@1000.service",
        ] {
            let p = format!("{prefix}/{forged}");
            assert_eq!(parse_cgroup_path(&p).unwrap(), CgroupInfo::default(), "{p}");
        }
        let p = format!(
            "/user.slice/user-1000.slice/user@1000.service/{}",
            "kubepods/burstable"
        );
        assert_eq!(parse_cgroup_path(&p).unwrap(), CgroupInfo::default());
        // Below the kubepods root, a container's own folder named `user.slice`
        // changes nothing.
        let p = format!("/{forged}/user.slice");
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "burstable", Some(ID), Some("containerd"))
        );
        // A rootless podman container there is still its container.
        let p = format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/kubepods.slice"
        );
        assert_eq!(
            parse_cgroup_path(&p).unwrap().container_id.as_deref(),
            Some(ID)
        );
    }

    #[test]
    fn cgroupfs_driver_paths() {
        let p = format!("/kubepods/besteffort/pod{UID}/{ID}");
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "besteffort", Some(ID), None)
        );
        let p = format!("/kubepods/pod{UID}/crio-{ID}");
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info(UID, "guaranteed", Some(ID), Some("crio"))
        );
        let p = format!("/kubepods/burstable/pod{}/{ID}", UID.to_uppercase());
        assert_eq!(parse_cgroup_path(&p).unwrap().pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn podman_scopes_give_the_container() {
        let podman = |id: &str| CgroupInfo {
            container_id: Some(id.into()),
            runtime: Some("podman".into()),
            ..CgroupInfo::default()
        };
        for p in [
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!(
                "/machine.slice/machine-libpod_pod_{}.slice/libpod-{ID}.scope",
                &ID[..64]
            ),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            format!("/libpod_parent/libpod-{ID}"),
            format!("/machine.slice/libpod-{}.scope", ID.to_uppercase()),
        ] {
            assert_eq!(parse_cgroup_path(&p).unwrap(), podman(ID), "{p}");
        }
        // A pod slice alone (the infra container's parent) is not a container.
        assert_eq!(
            parse_cgroup_path(&format!("/machine.slice/machine-libpod_pod_{ID}.slice")).unwrap(),
            CgroupInfo::default()
        );
        for bad in [
            "/machine.slice/libpod-abc.scope".to_string(),
            format!("/machine.slice/libpod-{}zz.scope", &ID[..62]),
            format!("/machine.slice/libpod-{ID}0.scope"),
            "/machine.slice/libpod-.scope".to_string(),
        ] {
            assert!(
                matches!(
                    parse_cgroup_path(&bad),
                    Err(CgroupPathError::ContainerId { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn non_pod_paths_are_empty() {
        for p in [
            "/",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/containerd.service",
        ] {
            assert_eq!(parse_cgroup_path(p).unwrap(), CgroupInfo::default(), "{p}");
        }
    }

    #[test]
    fn malformed_paths_get_clear_errors() {
        assert_eq!(
            parse_cgroup_path("kubepods/x"),
            Err(CgroupPathError::NotAbsolute("kubepods/x".into()))
        );
        let e = parse_cgroup_path(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podnot_a_uid.slice",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cgroup path component \"kubepods-besteffort-podnot_a_uid.slice\": pod uid \"not-a-uid\" is not a UUID"
        );
        let e = parse_cgroup_path(&format!(
            "/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-abc.scope"
        ))
        .unwrap_err();
        assert!(
            matches!(e, CgroupPathError::ContainerId { ref id, .. } if id == "abc"),
            "{e}"
        );
        assert!(e.to_string().contains("is not 64 hex digits"));
        let e = parse_cgroup_path("/kubepods.slice/kubepods-platinum.slice").unwrap_err();
        assert!(
            e.to_string().contains("unknown QoS class \"platinum\""),
            "{e}"
        );
        let e = parse_cgroup_path(&format!("/kubepods/besteffort/pod{UID}/zz{}", &ID[2..]))
            .unwrap_err();
        assert!(matches!(e, CgroupPathError::ContainerId { .. }), "{e}");
    }
}
