//! `evolve-host`: run this Spin application locally (`up`) or fire one cron component
//! once (`cron`).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use evolve_host::instance_reuse as reuse;
use evolve_host::{HostOptions, Triggers};

#[derive(Parser)]
#[command(
    name = "evolve-host",
    about = "Runs a Spin application from spin.toml the way Spin does"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct AppArgs {
    /// The Spin manifest.
    #[arg(long, default_value = "spin.toml")]
    manifest: PathBuf,
    /// A Spin runtime configuration file (key-value stores).
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Set a variable, as `spin up --variable name=value` does.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// Keep one Redis connection per address across requests instead of a new one per
    /// `open` (Spin makes a new one; this measures what sharing would gain).
    #[arg(long)]
    shared_redis: bool,
    /// Instance slots in the pooling allocator.
    #[arg(long, default_value_t = 1000)]
    max_instances: u32,
    /// Linear memory one instance may use, in MiB (default: Spin's 4 GiB).
    #[arg(long, default_value_t = evolve_host::app::SPIN_MAX_MEMORY_BYTES >> 20)]
    max_instance_memory_mib: usize,
    /// Requests one WASIp3 instance serves before it is dropped (default 128), as a
    /// number or a range `A..B` drawn from for each instance. WASIp2 instances serve one.
    #[arg(long, value_parser = reuse::parse_usize_range)]
    max_instance_reuse_count: Option<reuse::Range<usize>>,
    /// Requests one WASIp3 instance serves at once (default 16), a number or `A..B`.
    #[arg(long, value_parser = reuse::parse_usize_range)]
    max_instance_concurrent_reuse_count: Option<reuse::Range<usize>>,
    /// Request timeout for WASIp3 components (default none), e.g. `30s` or `1..8s`.
    #[arg(long, value_parser = reuse::parse_duration_range)]
    request_timeout: Option<reuse::Range<std::time::Duration>>,
    /// How long an idle WASIp3 instance is kept for reuse, e.g. `1s`, `500ms`, `1..8s`.
    #[arg(long, default_value = "1s", value_parser = reuse::parse_duration_range)]
    idle_instance_timeout: reuse::Range<std::time::Duration>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the application: HTTP routes, cron schedules and Redis subscriptions.
    Up {
        #[command(flatten)]
        app: AppArgs,
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Do not run cron schedules (fire them with `cron` instead).
        #[arg(long)]
        no_cron: bool,
        /// Run only this component and its triggers, as `spin up --component-id`; may be
        /// given several times. The default is every component.
        #[arg(short = 'c', long = "component-id")]
        components: Vec<String>,
    },
    /// Print a runtime config whose `cache` store is the given Redis (for scripts).
    RuntimeConfig {
        #[arg(long)]
        cache_redis: String,
    },
    /// Fire one cron component once and exit.
    Cron {
        #[command(flatten)]
        app: AppArgs,
        #[arg(long)]
        component: String,
    },
}

impl AppArgs {
    fn options(&self) -> Result<HostOptions> {
        let mut variables = HashMap::new();
        for pair in &self.variables {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("--variable {pair:?}: expected NAME=VALUE"))?;
            variables.insert(evolve_host::variables::env_name(name), value.to_string());
        }
        Ok(HostOptions {
            manifest: self.manifest.clone(),
            runtime_config: self.runtime_config_file.clone(),
            shared_redis: self.shared_redis,
            max_instances: self.max_instances,
            max_instance_memory: self.max_instance_memory_mib << 20,
            variables,
            instance_reuse: reuse::InstanceReuse {
                max_instance_reuse_count: self
                    .max_instance_reuse_count
                    .unwrap_or(reuse::Range::Value(reuse::DEFAULT_MAX_INSTANCE_REUSE_COUNT)),
                max_instance_concurrent_reuse_count: self
                    .max_instance_concurrent_reuse_count
                    .unwrap_or(reuse::Range::Value(
                        reuse::DEFAULT_MAX_INSTANCE_CONCURRENT_REUSE_COUNT,
                    )),
                request_timeout: self.request_timeout,
                idle_instance_timeout: self.idle_instance_timeout,
            },
            components: Vec::new(),
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "evolve_host=info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Up {
            app,
            listen,
            no_cron,
            components,
        } => {
            let options = HostOptions {
                components,
                ..app.options()?
            };
            let running = evolve_host::start(
                &options,
                listen,
                Triggers {
                    cron: !no_cron,
                    redis: true,
                },
            )
            .await?;
            println!("Serving http://{}", running.addr);
            let mut routes: Vec<_> = running
                .app
                .manifest
                .trigger
                .http
                .iter()
                .filter_map(|t| match &t.route {
                    evolve_host::manifest::HttpRoute::Pattern(p) => {
                        Some((p.clone(), t.component.clone()))
                    }
                    _ => None,
                })
                .collect();
            routes.sort();
            for (route, component) in routes {
                println!("  {component}: http://{}{route}", running.addr);
            }
            running.wait().await
        }
        Command::RuntimeConfig { cache_redis } => {
            print!(
                "{}",
                evolve_host::runtime_config::RuntimeConfig::with_cache_in(&cache_redis)
            );
            Ok(())
        }
        Command::Cron { app, component } => {
            let app = evolve_host::App::load(&app.options()?).await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            evolve_host::cron::fire(&app, &component, now).await?;
            println!("{component}: cron event handled");
            Ok(())
        }
    }
}
