//! `credtrail-soak`: drives the real aggregator's webhook with realistic audit
//! traffic for a while and reports rate, memory and latency (`cargo xtask
//! soak`); writes a large database and measures start-up on it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use credtrail_tests::soak;

#[derive(Parser)]
#[command(
    name = "credtrail-soak",
    about = "Soak and restart tests of the credtrail aggregator"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Feed the webhook realistic traffic; print the soak line every 30 s and last.
    Traffic(soak::Options),
    /// Write a database of this many audit events (and the state they leave).
    MakeDb {
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
    },
    /// A simulated cluster: agents over mTLS, token reads and rotations,
    /// audit batches; prints the `scale ...` line last.
    Scale(soak::scale::ScaleOptions),
    /// Start the aggregator on a database; print start-up time and RSS.
    Restart {
        #[arg(long)]
        aggregator: PathBuf,
        #[arg(long)]
        db: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Traffic(o) => soak::run(o).await.map(|_| ()),
        Cmd::Scale(o) => soak::scale::run(o).await.map(|_| ()),
        Cmd::MakeDb { db, events } => {
            let m = soak::bigdb::make(&db, events)?;
            println!(
                "make-db events={} identities={} credential_uses={} bindings={} seconds={:.1} db={}",
                m.events,
                m.identities,
                m.credential_uses,
                m.bindings,
                m.seconds,
                db.display()
            );
            Ok(())
        }
        Cmd::Restart { aggregator, db } => {
            let r = soak::restart(&aggregator, &db).await?;
            println!(
                "restart events={} db_mib={:.0} ready_s={:.2} rss_mib={:.1} sigterm_s={:.2}",
                r.events, r.db_mib, r.ready_s, r.rss_mib, r.stop_s
            );
            Ok(())
        }
    }
}
