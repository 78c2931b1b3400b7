//! A local host for this Spin application: it reads `spin.toml` and runs the compiled
//! components as Spin 4.0.2 does, spin-sdk 5.2 (WASIp2) and spin-sdk 6 (WASIp3) alike
//! (HTTP, cron and Redis triggers; variables; allowed outbound hosts; Spin's Redis,
//! PostgreSQL and key-value interfaces on real servers).
//! It is a test and development tool; production runs on Spin, Fermyon Cloud or SpinKube.

pub mod app;
pub mod bindings;
pub mod cron;
pub mod http;
pub mod http_p3;
pub mod instance_reuse;
pub mod manifest;
pub mod outbound;
pub mod outbound_http;
pub mod redis_trigger;
pub mod routes;
pub mod runtime_config;
pub mod services;
pub mod spin_kv;
pub mod spin_pg;
pub mod spin_redis;
pub mod spin_variables;
pub mod state;
pub mod variables;
pub mod wasi_async;

use anyhow::Result;
use std::net::SocketAddr;
use std::sync::Arc;

pub use app::{App, HostOptions};

/// A running application: its HTTP address and the tasks serving its triggers.
/// Dropping it stops them.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    tasks: tokio::task::JoinSet<Result<()>>,
}

impl Running {
    /// Waits until a trigger task ends (normally never) and returns its outcome.
    pub async fn wait(mut self) -> Result<()> {
        match self.tasks.join_next().await {
            Some(result) => result?,
            None => std::future::pending().await,
        }
    }
}

/// Which triggers `start` runs besides HTTP.
#[derive(Debug, Clone, Copy)]
pub struct Triggers {
    pub cron: bool,
    pub redis: bool,
}

/// Loads the application and serves it on `listen` (port 0 picks a free port).
pub async fn start(
    options: &HostOptions,
    listen: SocketAddr,
    triggers: Triggers,
) -> Result<Running> {
    let app = App::load(options).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(http::serve(app.clone(), listener));
    if triggers.cron && !app.manifest.trigger.cron.is_empty() {
        tasks.spawn(cron::run_schedules(app.clone()));
    }
    if triggers.redis && !app.manifest.trigger.redis.is_empty() {
        // Subscribe before returning, so a message published right after start is seen.
        let subscriptions = redis_trigger::subscribe_all(app.clone()).await?;
        tasks.spawn(subscriptions);
    }
    Ok(Running { addr, app, tasks })
}
