//! The credtrail demo (`cargo xtask demo`) and its end-to-end test: the real
//! agent on this machine with real eBPF, the real aggregator on the embedded
//! store, the API-server simulator delivering audit events to the real
//! webhook, and a short story played in pod-shaped cgroups.
//!
//! The demo binary (`credtrail-demo`) runs the aggregator and the agent as
//! their own binaries ([`procs`]); the end-to-end test runs them in-process.
//! Both play the same [`story`] and read alerts through the query API
//! ([`report`]).

pub mod env;
pub mod procs;
pub mod report;
pub mod story;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::apisim::{self, RunningApiSim, audit, https, rbac::Rbac};
use env::DemoEnv;
use story::{CallResult, SCENES, Scene, Story};

/// Starts the API-server simulator of the story, delivering to the
/// aggregator's webhook (`https://<webhook>/audit`) with its client certificate.
pub async fn start_apisim(env: &DemoEnv) -> anyhow::Result<RunningApiSim> {
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let server_ca = read(&env.pki.server_ca)?;
    let tls = https::client_config(
        &server_ca,
        Some((
            &read(&env.webhook_client.cert)?,
            &read(&env.webhook_client.key)?,
        )),
    )?;
    let sim = apisim::start(apisim::ApiSimConfig {
        listen: env.addrs.apiserver,
        public_listen: Some(env.addrs.apiserver_public),
        cert_pem: env.server_cert_pem.clone(),
        key_pem: env.server_key_pem.clone(),
        client_ca_pem: env.cluster_ca_pem.clone(),
        issuer: env.issuer.clone(),
        rbac: Rbac::default(),
        webhook: Some(audit::WebhookConfig {
            path: "/audit".into(),
            target: https::Target {
                addr: env.addrs.webhook,
                server_name: env.addrs.webhook.ip().to_string(),
                tls,
                bind: None,
            },
            batch_max: 400,
            batch_wait: Duration::from_millis(1000),
        }),
        audit_log: Some(env.dir.join("audit.jsonl")),
    })
    .await?;
    let s = &env.pod.spec;
    sim.objects.add_pod(
        &s.namespace,
        &s.name,
        &s.uid,
        &s.node_name,
        &env.addrs.pod_ip.to_string(),
    );
    Ok(sim)
}

/// Plays the scenes in order; after each, waits until its audit events were
/// delivered to the aggregator (webhook 2xx, i.e. stored).
pub async fn play(
    env: &DemoEnv,
    sim: &RunningApiSim,
    apisim_bin: &Path,
    mut say: impl FnMut(&str),
) -> anyhow::Result<Vec<(Scene, CallResult)>> {
    let mut out = Vec::new();
    let mut delivered = 0u64;
    for (i, scene) in SCENES.iter().enumerate() {
        say(&format!("  {}. {}", i + 1, scene.title));
        let story = Story {
            env,
            apisim_bin: apisim_bin.to_path_buf(),
        };
        let result = tokio::task::block_in_place(|| match i {
            0 => story.workload_uses_own_token(),
            1 => story.stolen_token_from_outside(),
            2 => story.human_grants_cluster_admin(),
            _ => story.ci_grants_cluster_admin(),
        })?;
        if !(200..300).contains(&result.status) {
            bail!(
                "scene {}: the API server answered {}: {}",
                i + 1,
                result.status,
                result.body
            );
        }
        say(&format!(
            "     -> HTTP {} from the API server",
            result.status
        ));
        delivered += scene.requests as u64;
        let start = Instant::now();
        loop {
            let st = sim.audit.stats();
            if st.events_sent >= delivered {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("audit events not delivered to the webhook: {st:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        out.push((scene.clone(), result));
    }
    Ok(out)
}

/// Checks the alerts against the story. Expected, exactly:
/// - two AN1547 alerts for the pod's service account from the outside
///   address: the token used off its node (naming where it was read: the
///   pod on this node), and the same JTI used from two places;
/// - one AN1579 alert for alice's cluster-admin grant from her unknown address;
/// - nothing for the workload's own use and nothing for the CI grant.
pub fn check_alerts(
    env: &DemoEnv,
    alerts: &[credtrail_aggregator::alert::Alert],
) -> Result<(), String> {
    use credtrail_aggregator::alert::{Alert, SourceClass};
    let a = &env.addrs;
    let spec = &env.pod.spec;
    let web = format!(
        "system:serviceaccount:{}:{}",
        spec.namespace, spec.service_account
    );
    let is_theft = |x: &Alert| {
        x.analytic == "AN1547" && x.identity.username == web && x.source_ip == Some(a.outside_ip)
    };
    let is_grant = |x: &Alert| {
        x.analytic == "AN1579" && x.identity.username == "alice" && x.source_ip == Some(a.admin_ip)
    };
    let pod = format!("{}/{}", spec.namespace, spec.name);
    let names_the_read = |x: &Alert| {
        x.evidence.iter().any(|e| {
            e.kind == "credential_read"
                && e.node == env.node
                && e.pod.as_deref() == Some(pod.as_str())
        })
    };
    let mut problems = Vec::new();
    let thefts: Vec<&Alert> = alerts.iter().filter(|x| is_theft(x)).collect();
    if thefts.len() != 2 {
        problems.push(format!(
            "expected 2 AN1547 alerts for {web} from {} (off its node; same JTI from two places), got {}",
            a.outside_ip,
            thefts.len()
        ));
    }
    if !thefts
        .iter()
        .any(|x| x.source_class == SourceClass::Outside && names_the_read(x))
    {
        problems.push(format!(
            "no AN1547 alert classifies {} as outside and names the read in pod {pod} on {}",
            a.outside_ip, env.node
        ));
    }
    let grants = alerts.iter().filter(|x| is_grant(x)).count();
    if grants != 1 {
        problems.push(format!(
            "expected 1 AN1579 alert for alice from {}, got {grants}",
            a.admin_ip
        ));
    }
    for x in alerts.iter().filter(|x| !is_theft(x) && !is_grant(x)) {
        problems.push(format!(
            "unexpected: {} {} for {} from {:?}: {}",
            x.rule, x.analytic, x.identity.username, x.source_ip, x.reason
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
