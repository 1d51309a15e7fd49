//! Round trips and field-naming errors of the conversions.
use super::*;
use crate::model::*;

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(s, 123_456_789).unwrap()
}

fn samples() -> Vec<Observation> {
    let process = Process {
        pid: 7,
        tgid: 7,
        ppid: 1,
        uid: 1000,
        comm: "curl".into(),
        exe: Some("/usr/bin/curl".into()),
        cmdline: vec!["curl".into(), "-H".into(), "<redacted>".into()],
        parent_comm: Some("sh".into()),
        mnt_ns: 4026531840,
    };
    let workload = Workload {
        cgroup_id: 99,
        cgroup_path: Some("/kubepods.slice/pod".into()),
        container_id: Some("abc".into()),
        container_runtime: Some("containerd".into()),
        pod_uid: Some("uid-1".into()),
        pod_namespace: Some("default".into()),
        pod_name: Some("web".into()),
        qos_class: Some("besteffort".into()),
    };
    let cert = CertIdentity {
        sha256: "aa".into(),
        subject_cn: Some("alice".into()),
        subject_o: vec!["dev".into()],
        issuer_cn: Some("ca".into()),
        not_before: Some(t(1)),
        not_after: Some(t(2)),
    };
    let token = TokenIdentity {
        sha256: "bb".into(),
        claims: Some(JwtClaims {
            jti: Some("j".into()),
            aud: vec!["https://kubernetes.default.svc".into()],
            exp: Some(5),
            pod_uid: Some("uid-1".into()),
            ..Default::default()
        }),
    };
    vec![
        Observation {
            id: "n/1/1".into(),
            time: t(100),
            node: "n".into(),
            event: ObservationEvent::NodeInfo(NodeInfo {
                name: "n".into(),
                addresses: vec!["127.10.0.1".parse().unwrap(), "::1".parse().unwrap()],
                pod_cidrs: vec!["127.10.1.0/24".into()],
                agent_version: "0.1.0".into(),
                kernel_release: "6.18".into(),
                hooks: vec!["tracepoint_openat".into()],
                blind_spots: vec!["x".into()],
            }),
        },
        Observation {
            id: "n/1/2".into(),
            time: t(101),
            node: "n".into(),
            event: ObservationEvent::CredentialRead(CredentialRead {
                source: CaptureSource::Tracepoint,
                process: Some(process.clone()),
                workload: Some(workload.clone()),
                path: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
                flags: 0o100000,
                inode: 12,
                reads: 3,
                credential: CredentialIdentity {
                    kind: CredentialKind::Kubeconfig,
                    sha256: Some("cc".into()),
                    token: Some(token.clone()),
                    kubeconfig: Some(KubeconfigIdentity {
                        current_context: Some("ctx".into()),
                        servers: vec!["https://127.0.0.1:6443".into()],
                        users: vec![KubeconfigUser {
                            name: "alice".into(),
                            client_certificate: Some(cert.clone()),
                            token: Some(token),
                            exec_command: None,
                            auth_provider: Some("oidc".into()),
                            username: None,
                        }],
                    }),
                    certificate: Some(cert),
                    error: None,
                },
            }),
        },
        Observation {
            id: "n/1/3".into(),
            time: t(102),
            node: "n".into(),
            event: ObservationEvent::ApiConnect(ApiConnect {
                source: CaptureSource::CgroupConnect,
                process: Some(process),
                workload: Some(workload),
                local: Some("127.10.1.5:40000".parse().unwrap()),
                remote: "[::1]:6443".parse().unwrap(),
                translated: Some("127.10.0.1:61000".parse().unwrap()),
            }),
        },
        Observation {
            id: "n/1/4".into(),
            time: t(103),
            node: "n".into(),
            event: ObservationEvent::Loss(Loss {
                stage: "spool".into(),
                count: 3,
                total: 9,
            }),
        },
    ]
}

#[test]
fn every_observation_kind_round_trips() {
    for obs in samples() {
        let wire = pb::Observation::from(obs.clone());
        let back = Observation::try_from(wire).unwrap();
        assert_eq!(back, obs);
    }
}

#[test]
fn errors_name_the_bad_field() {
    let mut s = samples();
    let mut conn = pb::Observation::from(s.remove(2));
    if let Some(pb::observation::Event::ApiConnect(c)) = &mut conn.event {
        c.remote.as_mut().unwrap().ip = "not-an-ip".into();
    }
    let err = Observation::try_from(conn).unwrap_err();
    assert_eq!(err.field, "api_connect.remote.ip");
    assert!(err.to_string().contains("not-an-ip"), "{err}");

    let mut read = pb::Observation::from(s.remove(1));
    if let Some(pb::observation::Event::CredentialRead(r)) = &mut read.event {
        r.credential.as_mut().unwrap().kind = 42;
    }
    let err = Observation::try_from(read.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "credential_read.credential.kind: unknown enum value 42"
    );

    if let Some(pb::observation::Event::CredentialRead(r)) = &mut read.event {
        r.credential.as_mut().unwrap().kind = pb::CredentialKind::Kubeconfig as i32;
        r.credential
            .as_mut()
            .unwrap()
            .kubeconfig
            .as_mut()
            .unwrap()
            .users[0]
            .client_certificate
            .as_mut()
            .unwrap()
            .sha256
            .clear();
    }
    let err = Observation::try_from(read).unwrap_err();
    assert_eq!(
        err.field,
        "credential_read.credential.kubeconfig.users[0].client_certificate.sha256"
    );

    let mut info = pb::Observation::from(s.remove(0));
    info.time = None;
    assert_eq!(
        Observation::try_from(info.clone()).unwrap_err().field,
        "time"
    );
    info.time = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: -1,
    });
    assert_eq!(
        Observation::try_from(info.clone()).unwrap_err().field,
        "time"
    );
    info.time = Some(prost_types::Timestamp::default());
    info.event = None;
    assert_eq!(
        Observation::try_from(info).unwrap_err().to_string(),
        "event: missing"
    );
}

#[test]
fn encoded_batches_are_agent_messages_on_the_wire() {
    use prost::Message as _;
    let obs: Vec<pb::Observation> = samples().into_iter().map(Into::into).collect();
    let encoded = pb::EncodedAgentMessage {
        node_name: "n".into(),
        sent_at: None,
        payload: Some(pb::encoded_agent_message::Payload::Batch(
            pb::EncodedObservationBatch {
                first_seq: 7,
                observations: obs.iter().map(|o| o.encode_to_vec().into()).collect(),
            },
        )),
    };
    let back = pb::AgentMessage::decode(encoded.encode_to_vec().as_slice()).unwrap();
    let Some(pb::agent_message::Payload::Batch(b)) = back.payload else {
        panic!("not a batch");
    };
    assert_eq!((b.first_seq, b.observations), (7, obs));
}

#[test]
fn port_out_of_range_is_refused() {
    let a = pb::SocketAddress {
        ip: "127.0.0.1".into(),
        port: 70000,
    };
    assert_eq!(SocketAddr::try_from(a).unwrap_err().field, "port");
}
