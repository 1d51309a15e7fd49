//! cgroup paths in the forms not covered above, and paths a container
//! shaped itself (folders below its own cgroup).

use super::*;

const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const UID_: &str = "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0";
const OTHER_: &str = "11111111_2222_3333_4444_555555555555";
const ID: &str = "4d9f0c3b8e7a6d5c4b3a29180716f5e4d3c2b1a09f8e7d6c5b4a392817060504";
const OTHER_ID: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

fn info(qos: &str, rt: Option<&str>) -> CgroupInfo {
    CgroupInfo {
        pod_uid: Some(UID.into()),
        qos_class: Some(qos.into()),
        container_id: Some(ID.into()),
        runtime: rt.map(Into::into),
    }
}

/// Old containerd's `<pod slice>:<runtime>:<id>` with each runtime name.
#[test]
fn colon_scopes_name_their_runtime() {
    let pod = format!("/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice");
    for (runtime, want) in [
        ("cri-containerd", Some("containerd")),
        ("crio", Some("crio")),
        ("crio-conmon", Some("crio")),
        ("docker", Some("docker")),
        ("rkt", None),
    ] {
        let p = format!("{pod}:{runtime}:{ID}");
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info("burstable", want),
            "{p}"
        );
    }
    // No runtime part: the id alone.
    let p = format!("{pod}:{ID}");
    assert_eq!(parse_cgroup_path(&p).unwrap(), info("burstable", None));
}

/// A pod uid must be five groups of 8-4-4-4-12 hex digits: right lengths
/// with a non-hex digit, or hex in the wrong groups, are refused.
#[test]
fn pod_uids_need_both_the_shape_and_hex_digits() {
    for bad in [
        "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1fz",
        "0f1e2d3c4b5a_6978_8796_a5b4c3d2e1f0",
        "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0_0000",
        "deadbeef",
    ] {
        let p = format!("/kubepods.slice/kubepods-pod{bad}.slice");
        assert_eq!(
            parse_cgroup_path(&p),
            Err(CgroupPathError::PodUid {
                component: format!("kubepods-pod{bad}.slice"),
                uid: bad.replace('_', "-"),
            }),
            "{p}"
        );
    }
    let p = format!("/kubepods/burstable/pod{}/{ID}", UID.to_uppercase());
    assert_eq!(parse_cgroup_path(&p).unwrap(), info("burstable", None));
}

/// A container id is exactly 64 hex digits, in any case (lowercased).
#[test]
fn container_ids_need_64_hex_digits() {
    let pod = format!("/kubepods.slice/kubepods-pod{UID_}.slice");
    let p = format!("{pod}/cri-containerd-{}.scope", ID.to_uppercase());
    assert_eq!(
        parse_cgroup_path(&p).unwrap(),
        info("guaranteed", Some("containerd"))
    );
    for bad in [
        ID[..63].to_string(),
        format!("{}g", &ID[..63]),
        format!("{ID}0"),
    ] {
        let p = format!("{pod}/docker-{bad}.scope");
        assert_eq!(
            parse_cgroup_path(&p),
            Err(CgroupPathError::ContainerId {
                component: format!("docker-{bad}.scope"),
                id: bad.clone(),
            }),
            "{p}"
        );
    }
}

/// A container that may write its cgroup (systemd inside, a privileged
/// pod) creates folders below its own, even named like another pod's slice
/// or container's scope: the attribution stays its own and does not fail.
#[test]
fn folders_below_the_container_are_the_containers_own() {
    let own = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
    );
    for below in [
        "init.scope".to_string(),
        "system.slice/nginx.service".to_string(),
        format!("kubepods-besteffort-pod{OTHER_}.slice/cri-containerd-{OTHER_ID}.scope"),
        format!("docker-{OTHER_ID}.scope"),
        "kubepods-platinum.slice".to_string(),
        "pod-not-a-uid".to_string(),
    ] {
        let p = format!("{own}/{below}");
        assert_eq!(
            parse_cgroup_path(&p).unwrap(),
            info("burstable", Some("containerd")),
            "{p}"
        );
    }
    let own = format!("/kubepods/besteffort/pod{UID}/{ID}");
    let p = format!(
        "{own}/kubepods/burstable/pod{}/{OTHER_ID}",
        OTHER_.replace('_', "-")
    );
    assert_eq!(parse_cgroup_path(&p).unwrap(), info("besteffort", None));
    let p = format!("/kubepods.slice/kubepods-pod{UID_}.slice:crio:{ID}/crio-{OTHER_ID}.scope");
    assert_eq!(
        parse_cgroup_path(&p).unwrap(),
        info("guaranteed", Some("crio"))
    );
    // Podman: the outermost container scope, whatever is nested in it.
    let p = format!("/machine.slice/libpod-{ID}.scope/libpod-{OTHER_ID}.scope");
    assert_eq!(
        parse_cgroup_path(&p).unwrap(),
        CgroupInfo {
            container_id: Some(ID.into()),
            runtime: Some("podman".into()),
            ..CgroupInfo::default()
        }
    );
}

/// The kubepods root alone, or a QoS level alone, is no pod.
#[test]
fn kubepods_levels_without_a_pod_are_no_pod() {
    assert_eq!(
        parse_cgroup_path("/kubepods").unwrap(),
        CgroupInfo::default()
    );
    assert_eq!(
        parse_cgroup_path("/kubepods.slice").unwrap(),
        CgroupInfo::default()
    );
    assert_eq!(
        parse_cgroup_path("/kubepods/burstable").unwrap(),
        CgroupInfo {
            qos_class: Some("burstable".into()),
            ..CgroupInfo::default()
        }
    );
    assert_eq!(
        parse_cgroup_path("/kubepods.slice/kubepods-besteffort.slice").unwrap(),
        CgroupInfo {
            qos_class: Some("besteffort".into()),
            ..CgroupInfo::default()
        }
    );
    // A name merely containing "kubepods" without a separator is not one.
    assert_eq!(
        parse_cgroup_path("/system.slice/mykubepodsd.service").unwrap(),
        CgroupInfo::default()
    );
}
