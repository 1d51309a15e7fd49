//! `credtrail-agent`: a thin CLI around [`credtrail_agent::start`].

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser as _;
use credtrail_agent::cli::{Cli, LogFormat};
use credtrail_agent::output::JsonlWriter;
use credtrail_agent::stream::{self, HelloInfo, StreamConfig};
use credtrail_proto::model::{Observation, ObservationEvent};
use tokio::sync::mpsc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_config {
        print!("{}", credtrail_agent::config::default_yaml());
        return Ok(());
    }
    if let Some(dest) = &cli.install_seccomp_profile {
        credtrail_agent::seccomp::install(dest)?;
        println!("seccomp profile written to {}", dest.display());
        return Ok(());
    }
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run(cli));
    // Work still running (an I/O worker stuck on a file that never answers)
    // does not keep the agent alive.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// The filter from CREDTRAIL_LOG (the variable the chart sets, as for the
/// aggregator), else RUST_LOG, else `info`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(credtrail_agent::config::ENV_LOG)
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let output = cli.output_target().map_err(anyhow::Error::msg)?;
    let cfg = credtrail_agent::cli::resolve(&cli)?;
    if output.is_none() && cli.stream.aggregator.is_none() {
        bail!("nowhere to send observations: give --output jsonl PATH|- or --aggregator URL");
    }
    let mut writer = match &output {
        Some(t) => Some(JsonlWriter::open(t).with_context(|| format!("opening output {t:?}"))?),
        None => None,
    };
    // The probes' listener comes up first: alive while the programs load, ready once attached.
    let health = credtrail_agent::health::Health::new();
    let mut health_task = None;
    if let Some(addr) = cli.health_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--health-listen {addr}"))?;
        health_task = Some(tokio::spawn(credtrail_agent::health::serve(
            listener,
            health.clone(),
        )));
    }
    let mut agent = credtrail_agent::start(cfg)
        .await
        .context("starting the eBPF agent")?;
    tracing::info!(hooks = ?agent.hooks(), "agent running");
    health.set_ready(true);

    let mut stream = None;
    let mut stream_tx = None;
    if let Some(url) = &cli.stream.aggregator {
        let Some(ca) = &cli.stream.tls_ca else {
            bail!("--aggregator needs --tls-ca (the CA of the aggregator's certificate)");
        };
        let (cert, key) = match (
            &cli.stream.tls_cert,
            &cli.stream.tls_key,
            &cli.stream.token_file,
        ) {
            (Some(c), Some(k), _) => (c.clone(), k.clone()),
            (None, None, Some(_)) => (Default::default(), Default::default()),
            _ => bail!(
                "--aggregator needs --tls-cert and --tls-key (kubelet-certificate identity) or --token-file (ServiceAccount token identity)"
            ),
        };
        // The first observation is the node info: it makes the stream's Hello.
        let first = agent
            .observations
            .recv()
            .await
            .context("agent stopped at once")?;
        let ObservationEvent::NodeInfo(info) = &first.event else {
            bail!("the agent's first observation is not its node info");
        };
        let mut scfg = StreamConfig::new(url.clone(), ca.clone(), cert, key);
        scfg.token_file = cli.stream.token_file.clone();
        scfg.spool_dir = cli.stream.spool_dir.clone();
        if let Some(n) = cli.stream.spool_capacity {
            scfg.spool_capacity = n;
        }
        if let Some(n) = cli.stream.spool_max_bytes {
            scfg.spool_max_bytes = n;
        }
        let (tx, rx) = mpsc::channel::<Observation>(4096);
        stream = Some(
            stream::spawn(scfg, HelloInfo::from(info), rx, Duration::from_secs(10))
                .context("starting the aggregator stream")?,
        );
        write_local(&mut writer, &first)?;
        tx.send(first).await.ok();
        stream_tx = Some(tx);
    }

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    // The liveness beat: the loop turns at least this often, idle or not.
    let mut beat = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = beat.tick() => health.beat(),
            obs = agent.observations.recv() => {
                let Some(obs) = obs else { break };
                write_local(&mut writer, &obs)?;
                if let Some(tx) = &stream_tx
                    && tx.send(obs).await.is_err()
                {
                    bail!("the aggregator stream stopped");
                }
            }
        }
    }
    tracing::info!("shutting down");
    health.set_ready(false);
    if let Some(t) = health_task {
        t.abort();
    }
    // The event loop stops at once; the enrichment thread and its I/O
    // workers are not waited for (one may be stuck on a hostile file).
    if tokio::time::timeout(Duration::from_secs(1), agent.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the event loop did not stop within 1 s: exiting anyway");
    }
    drop(stream_tx);
    if let Some(s) = stream {
        s.join().await;
    }
    if let Some(w) = &mut writer {
        w.flush().context("flushing output")?;
    }
    Ok(())
}

fn write_local(writer: &mut Option<JsonlWriter>, obs: &Observation) -> anyhow::Result<()> {
    if let Some(w) = writer {
        w.write(obs).context("writing output")?;
        w.flush().context("flushing output")?;
    }
    Ok(())
}
