//! The cron trigger, as the `spin-trigger-cron` plugin runs it: each `[[trigger.cron]]`
//! entry fires its component on a six-field expression (seconds first), calling the
//! component's `handle-cron-event` export with the time it fired, in a fresh instance
//! each time. A spin-sdk 5.2 component exports the blocking `fermyon:spin-cron@2.0.0`
//! world (trigger-cron 0.4); a spin-sdk 6 component exports the async
//! `spin:cron@3.0.0` one, which is called inside `run_concurrent` as trigger-cron 0.5.0
//! calls it. The export's async flag tells them apart. `fire` runs one component once,
//! for tests and for the `cron` subcommand.

use anyhow::{Context, Result};
use std::str::FromStr;
use std::sync::Arc;

use crate::app::App;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/spin-cron.wit",
        world: "fermyon:spin-cron/spin-cron",
        exports: { default: async },
    });
}

mod bindings3 {
    wasmtime::component::bindgen!({
        path: "../../wit/spin-cron@3.0.0",
        world: "spin:cron/spin-cron",
        exports: { default: async },
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};
use bindings3::spin::cron::cron_types as types3;

/// The types-only interface the blocking cron world's export refers to.
pub const CRON_TYPES_INTERFACE: &str = "fermyon:spin-cron/cron-types@2.0.0";
/// The types-only interface the async cron world's export refers to.
pub const CRON3_TYPES_INTERFACE: &str = "spin:cron/cron-types@3.0.0";
pub const CRON_TYPES_INTERFACES: [&str; 2] = [CRON_TYPES_INTERFACE, CRON3_TYPES_INTERFACE];

const EXPORT: &str = "handle-cron-event";

/// Parses a six-field cron expression (seconds, minutes, hours, day of month, month,
/// day of week), the form the plugin accepts.
pub fn schedule(expression: &str) -> Result<cron::Schedule> {
    let fields = expression.split_whitespace().count();
    anyhow::ensure!(
        fields == 6,
        "cron expression {expression:?} has {fields} fields; the cron trigger takes six (seconds first)"
    );
    cron::Schedule::from_str(expression).with_context(|| format!("cron expression {expression:?}"))
}

/// Runs `component`'s `handle-cron-event` once.
pub async fn fire(app: &App, component: &str, timestamp: u64) -> Result<()> {
    let loaded = app.component(component)?;
    let mut store = app.store(loaded);
    let wasm = anyhow::Error::from;
    let is_async = matches!(
        loaded.pre.component().component_type().get_export(&app.engine, EXPORT),
        Some(wasmtime::component::types::ComponentItem::ComponentFunc(f)) if f.async_()
    );
    if is_async {
        let pre = bindings3::SpinCronPre::new(loaded.pre.clone())
            .map_err(wasm)
            .with_context(|| format!("component {component:?} does not export the cron world"))?;
        let instance = pre.instantiate_async(&mut store).await.map_err(wasm)?;
        let outcome = store
            .run_concurrent(async |accessor| {
                instance
                    .call_handle_cron_event(accessor, types3::Metadata { timestamp })
                    .await
            })
            .await
            .map_err(wasm)?
            .map_err(wasm)?;
        return match outcome {
            Ok(()) => Ok(()),
            Err(types3::Error::Other(message)) => {
                anyhow::bail!("component {component:?} failed: {message}")
            }
        };
    }
    let pre = bindings::SpinCronPre::new(loaded.pre.clone())
        .map_err(wasm)
        .with_context(|| format!("component {component:?} does not export the cron world"))?;
    let instance = pre.instantiate_async(&mut store).await.map_err(wasm)?;
    match instance
        .call_handle_cron_event(&mut store, Metadata { timestamp })
        .await
        .map_err(wasm)?
    {
        Ok(()) => Ok(()),
        Err(CronError::Other(message)) => {
            anyhow::bail!("component {component:?} failed: {message}")
        }
    }
}

/// Runs every cron trigger of the application on its schedule, forever.
pub async fn run_schedules(app: Arc<App>) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for trigger in &app.manifest.trigger.cron {
        let schedule = schedule(&trigger.cron_expression)?;
        let component = trigger.component.clone();
        let app = app.clone();
        tasks.spawn(async move {
            for next in schedule.upcoming(chrono::Utc) {
                let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                let timestamp = next.timestamp() as u64;
                match fire(&app, &component, timestamp).await {
                    Ok(()) => tracing::info!(%component, "cron event handled"),
                    Err(e) => tracing::error!(%component, "cron event failed: {}", app.variables.redact(&format!("{e:#}"))),
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_fields_only() {
        assert!(schedule("0 0 3 * * *").is_ok());
        assert!(schedule("0 */5 * * * *").is_ok());
        assert!(schedule("0 3 * * *").is_err());
        assert!(schedule("0 0 3 * * * 2030").is_err());
        assert!(schedule("nonsense a b c d e").is_err());
    }
}
