//! `minebox-cloud migrate | serve | admin`: MineBox Cloud's service (docs/cloud.md). Runs off the box.

use clap::{Parser, Subcommand};
use minebox_cloud::plans::{self, Until};
use minebox_cloud::{accounts::Throttle, db, Config};
use std::net::SocketAddr;

#[derive(Parser)]
#[command(name = "minebox-cloud", about = "MineBox Cloud: accounts, devices and snapshot downloads over PostgreSQL")]
struct Cli {
    /// The database owner's connection (libpq key=value or postgresql:// URL).
    #[arg(long, env = "MINEBOX_CLOUD_DATABASE_URL", global = true, default_value = "")]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the migrations the database lacks, upsert the coins, make the coming months' partitions.
    Migrate,
    /// Migrate, then serve the HTTP API.
    Serve {
        /// The API's connection: a role that is a member of minebox_api and owns nothing.
        #[arg(long, env = "MINEBOX_CLOUD_API_DATABASE_URL")]
        api_database_url: String,
        #[arg(long, env = "MINEBOX_CLOUD_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where users reach the service (the links in mails start with it).
        #[arg(long, env = "MINEBOX_CLOUD_PUBLIC_URL")]
        public_url: String,
        /// smtp://host:port, smtp://user:pass@host:587?tls=required or smtps://user:pass@host:465.
        #[arg(long, env = "MINEBOX_CLOUD_SMTP_URL")]
        smtp_url: String,
        #[arg(long, env = "MINEBOX_CLOUD_MAIL_FROM")]
        mail_from: String,
        /// Send the session cookie over plain HTTP too (local testing only).
        #[arg(long)]
        insecure_cookies: bool,
        /// Take client addresses from X-Forwarded-For (only behind a proxy that sets it).
        #[arg(long, env = "MINEBOX_CLOUD_BEHIND_PROXY")]
        behind_proxy: bool,
        /// The most connections to PostgreSQL the API opens (per replica).
        #[arg(long, env = "MINEBOX_CLOUD_API_POOL_SIZE", default_value_t = 16)]
        api_pool_size: usize,
        /// The payment provider's webhook signing secret (Stripe's whsec_...); without it
        /// POST /api/v1/billing/webhook answers 503.
        #[arg(long, env = "MINEBOX_CLOUD_BILLING_WEBHOOK_SECRET", hide_env_values = true)]
        billing_webhook_secret: Option<String>,
        /// Serve GET /metrics (Prometheus) here, with /healthz and /readyz; keep it private
        /// (loopback or an internal network). Without it there is no /metrics.
        #[arg(long, env = "MINEBOX_CLOUD_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
        /// A publisher's public key (minisign format) registrations must be signed with;
        /// repeatable. Without one, every registration is refused.
        #[arg(long = "snapshot-key")]
        snapshot_keys: Vec<std::path::PathBuf>,
        /// A bucket snapshots are registered in and served from (presigned URLs); repeatable.
        /// Its credentials, region and endpoint come from AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT (non-AWS stores).
        #[arg(long = "snapshot-bucket")]
        snapshot_buckets: Vec<String>,
    },
    /// Plans and subscriptions by hand, over the owner's connection.
    Admin {
        #[command(subcommand)]
        command: Admin,
    },
}

#[derive(Subcommand)]
enum Admin {
    /// Give an account a plan (replacing its subscription), with no end unless --until or --days.
    Grant {
        #[arg(long)]
        email: String,
        #[arg(long)]
        plan: String,
        /// Through this day, UTC (YYYY-MM-DD).
        #[arg(long, conflicts_with = "days")]
        until: Option<String>,
        /// For this many days from now.
        #[arg(long)]
        days: Option<u32>,
    },
    /// End an account's subscription now: it falls back to the free plan.
    Revoke {
        #[arg(long)]
        email: String,
    },
    /// The plans, their limits and how many accounts each has.
    Plans,
    /// A new token for a snapshot publisher (`minebox-publisher register --token-file`),
    /// printed once; making one again for the same name replaces it.
    PublisherToken {
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    if cli.database_url.is_empty() {
        anyhow::bail!("give the database owner's connection: --database-url or MINEBOX_CLOUD_DATABASE_URL");
    }
    match cli.command {
        Command::Migrate => minebox_cloud::prepare(&db::pool(&cli.database_url, 1)?).await,
        Command::Serve {
            api_database_url,
            listen,
            public_url,
            smtp_url,
            mail_from,
            insecure_cookies,
            behind_proxy,
            api_pool_size,
            billing_webhook_secret,
            metrics_listen,
            snapshot_keys,
            snapshot_buckets,
        } => {
            let snapshots = minebox_cloud::snapshots::SnapshotConfig {
                keys: minebox_snapshot::minisign::PublicKey::read_all(&snapshot_keys)?,
                buckets: snapshot_buckets
                    .iter()
                    .map(|b| minebox_cloud::snapshots::Bucket::from_env(b))
                    .collect::<anyhow::Result<_>>()?,
            };
            let config = Config {
                owner_url: cli.database_url,
                api_url: api_database_url,
                listen,
                public_url: public_url.trim_end_matches('/').to_string(),
                smtp_url,
                mail_from,
                cookie_secure: !insecure_cookies,
                behind_proxy,
                throttle: Throttle::default(),
                api_pool_size,
                billing_webhook_secret: billing_webhook_secret.filter(|s| !s.is_empty()),
                metrics_listen,
                snapshots,
            };
            let running = minebox_cloud::start(config).await?;
            tracing::info!("serving on {}", running.addr);
            if let Some(at) = running.metrics_addr {
                tracing::info!("metrics on http://{at}/metrics");
            }
            running.wait().await
        }
        Command::Admin { command } => {
            let mut client = db::client(&db::pool(&cli.database_url, 1)?).await?;
            db::migrate(&mut client).await?;
            let said = match command {
                Admin::Grant { email, plan, until, days } => {
                    let until = match (until, days) {
                        (Some(date), _) => Until::Date(date),
                        (None, Some(n)) => Until::Days(n),
                        (None, None) => Until::Forever,
                    };
                    plans::grant(&mut client, &email, &plan, &until).await?
                }
                Admin::Revoke { email } => plans::revoke(&mut client, &email).await?,
                Admin::Plans => plans::list(&client).await?,
                Admin::PublisherToken { name } => minebox_cloud::snapshots::publisher_token(&mut client, &name).await?,
            };
            print!("{}{}", said, if said.ends_with('\n') { "" } else { "\n" });
            Ok(())
        }
    }
}
