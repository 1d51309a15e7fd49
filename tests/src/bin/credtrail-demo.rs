//! `credtrail-demo`: what `cargo xtask demo` runs once everything is built.
//! Starts the aggregator and the agent (their binaries, from `--bin-dir`),
//! the API-server simulator, plays the story, prints the alerts fetched
//! through the query API, and cleans up. Needs root (eBPF, cgroups).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use credtrail_tests::demo::{
    self,
    env::{Addrs, DemoEnv},
    procs, report,
};

#[derive(Parser)]
#[command(
    name = "credtrail-demo",
    version,
    about = "Plays the credtrail story on this machine with real eBPF"
)]
struct Cli {
    /// Folder holding credtrail-aggregator, credtrail-agent and credtrail-apisim.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the work folder (certificates, logs, database, audit log).
    #[arg(long)]
    keep: bool,
    /// Leave everything running after the story until Ctrl-C (to browse the web page).
    #[arg(long)]
    keep_running: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(why) = credtrail_tests::fixtures::privileged_skip_reason() {
        bail!("the demo needs eBPF and cgroups: {why}");
    }
    let bin_dir = match cli.bin_dir.clone() {
        Some(d) => d,
        None => std::env::current_exe()
            .context("locating this binary")?
            .parent()
            .context("binary folder")?
            .to_path_buf(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run(cli, bin_dir))
}

async fn run(cli: Cli, bin_dir: PathBuf) -> anyhow::Result<()> {
    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("credtrail-demo-")
        .tempdir()
        .context("work folder")?;
    let dir = if cli.keep {
        work.keep()
    } else {
        work.path().to_path_buf()
    };
    println!("credtrail demo — work folder {}", dir.display());
    let env = DemoEnv::prepare(&dir, Addrs::demo())?;
    let a = env.addrs.clone();
    println!(
        "  node {} ({}), pod shop/{} ({}), API server https://{}",
        env.node, a.node_ip, env.pod.spec.name, a.pod_ip, a.apiserver
    );

    let mut aggregator = procs::aggregator(&bin_dir, &env)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        aggregator.check()?;
        if let Ok((200, _)) = report::http_get(a.api_listen, "/healthz").await {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the aggregator did not become healthy; see {}",
                aggregator.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  aggregator up (embedded store {})",
        dir.join("credtrail.db").display()
    );
    let sim = demo::start_apisim(&env).await?;
    let mut agent = procs::agent(&bin_dir, &env)?;
    let connected = tokio::select! {
        r = report::wait_metric(a.api_listen, "credtrail_agents_connected", Duration::from_secs(60), |v| v >= 1.0) => r,
        e = async {
            loop {
                if let Err(e) = agent.check() { return e; }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } => Err(e),
    };
    connected.with_context(|| format!("the agent did not connect; see {}", agent.log.display()))?;
    println!(
        "  agent up on {} (real eBPF), streaming over mTLS to {}",
        env.node, a.agent_listen
    );
    println!();
    println!("The story:");
    let apisim_bin = bin_dir.join("credtrail-apisim");
    demo::play(&env, &sim, &apisim_bin, |s| println!("{s}")).await?;
    // Let detection finish on the last batch.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alerts = report::fetch_alerts(a.api_listen, &env.api_token).await?;
    println!();
    println!("Alerts (GET http://{}/api/v1/alerts):", a.api_listen);
    print!("{}", report::render(&alerts));
    println!();
    let verdict = demo::check_alerts(&env, &alerts);
    match &verdict {
        Ok(()) => println!(
            "As expected: the stolen token and alice's grant alert; the workload and the CI grant do not."
        ),
        Err(e) => println!("NOT as expected:\n{e}"),
    }
    println!();
    println!(
        "Web page:      http://{}/#token={}   (the page keeps the token in this tab only)",
        a.api_listen, env.api_token
    );
    println!(
        "HTTP/JSON API: curl -H 'Authorization: Bearer {}' http://{}/api/v1/alerts   (docs/API.md)",
        env.api_token, a.api_listen
    );
    println!(
        "API token:     {} (role responder; file {})",
        env.api_token,
        env.api_token_file.display()
    );
    println!(
        "gRPC API:      {}  (credtrail.query.v1.QueryService)",
        a.grpc_listen
    );
    println!("Metrics:       http://{}/metrics", a.api_listen);
    println!("Story took {:.1} s.", started.elapsed().as_secs_f64());
    if cli.keep_running {
        println!("Running until Ctrl-C ...");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    agent.stop();
    aggregator.stop();
    sim.shutdown().await;
    drop(env);
    if cli.keep {
        println!(
            "Kept {} (logs, certificates, database, audit.jsonl).",
            dir.display()
        );
    } else {
        println!("Cleaned up (processes stopped, pod cgroup and work folder removed).");
    }
    verdict.map_err(anyhow::Error::msg)
}
