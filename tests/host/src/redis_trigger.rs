//! The Redis trigger: subscribes to each `[[trigger.redis]]` channel and hands every
//! published message to a fresh instance of the component, through
//! `fermyon:spin/inbound-redis.handle-message` (spin-sdk 5.2) or, as Spin 4 does, the
//! async `spin:redis/inbound-redis@3.0.0.handle-message` inside `run_concurrent`
//! (spin-sdk 6). Messages on one channel are handled in order, one at a time.

use anyhow::{Context, Result};
use futures::StreamExt;
use std::future::Future;
use std::sync::Arc;
use wasmtime::component::{ComponentType, Lift, Lower};

use crate::app::App;
use crate::bindings::redis3::spin::redis::redis::Error as RedisError3;

const INBOUND_REDIS: &str = "fermyon:spin/inbound-redis";
const INBOUND_REDIS3: &str = "spin:redis/inbound-redis@3.0.0";

/// `fermyon:spin/redis-types.error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq)]
#[component(enum)]
#[repr(u8)]
pub enum InboundError {
    #[component(name = "success")]
    Success,
    #[component(name = "error")]
    Error,
}

/// Hands one message to `component`.
pub async fn deliver(app: &App, component: &str, payload: Vec<u8>) -> Result<()> {
    let loaded = app.component(component)?;
    let mut store = app.store(loaded);
    let wasm = anyhow::Error::from;
    let instance = loaded
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(wasm)?;
    let v2 = instance.get_export_index(&mut store, None, INBOUND_REDIS);
    let v3 = instance.get_export_index(&mut store, None, INBOUND_REDIS3);
    let interface = match (v2, v3) {
        (Some(_), Some(_)) => {
            anyhow::bail!("component {component:?} exports multiple Redis interfaces")
        }
        (None, Some(interface)) => {
            let func = instance
                .get_export_index(&mut store, Some(&interface), "handle-message")
                .context("no handle-message export")?;
            let func = instance
                .get_typed_func::<(Vec<u8>,), (Result<(), RedisError3>,)>(&mut store, &func)
                .map_err(wasm)?;
            let (result,) = store
                .run_concurrent(async |accessor| func.call_concurrent(accessor, (payload,)).await)
                .await
                .map_err(wasm)?
                .map_err(wasm)?;
            return result.map_err(|e| anyhow::anyhow!("component {component:?} returned {e:?}"));
        }
        (Some(interface), None) => interface,
        (None, None) => anyhow::bail!(
            "component {component:?} exports neither {INBOUND_REDIS} nor {INBOUND_REDIS3}"
        ),
    };
    let func = instance
        .get_export_index(&mut store, Some(&interface), "handle-message")
        .context("no handle-message export")?;
    let func = instance
        .get_typed_func::<(Vec<u8>,), (Result<(), InboundError>,)>(&mut store, &func)
        .map_err(wasm)?;
    let (result,) = func
        .call_async(&mut store, (payload,))
        .await
        .map_err(wasm)?;
    result.map_err(|e| anyhow::anyhow!("component {component:?} returned {e:?}"))
}

/// Subscribes to every Redis trigger's channel; the returned future delivers messages
/// until a subscription's connection drops, and then fails, as Spin's Redis trigger does.
pub async fn subscribe_all(app: Arc<App>) -> Result<impl Future<Output = Result<()>> + Send> {
    let mut tasks = tokio::task::JoinSet::new();
    let default_address = app
        .manifest
        .application
        .trigger
        .redis
        .as_ref()
        .map(|r| r.address.clone());
    for trigger in &app.manifest.trigger.redis {
        let address = app.variables.expand(
            trigger
                .address
                .as_deref()
                .or(default_address.as_deref())
                .context("redis trigger without address")?,
        )?;
        let channel = app.variables.expand(&trigger.channel)?;
        let component = trigger.component.clone();
        let client = redis::Client::open(address.as_str())?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .with_context(|| format!("subscribing to redis channel {channel:?}"))?;
        pubsub.subscribe(&channel).await?;
        tracing::info!(%component, %channel, "redis trigger subscribed");
        let app = app.clone();
        let server = app.variables.redact(&address);
        tasks.spawn(async move {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let payload = message.get_payload_bytes().to_vec();
                if let Err(e) = deliver(&app, &component, payload).await {
                    tracing::error!(%component, "redis message failed: {}", app.variables.redact(&format!("{e:#}")));
                }
            }
            // As Spin's trigger: a lost connection ends the trigger, and with it the process.
            anyhow::bail!("disconnected from {server}")
        });
    }
    Ok(async move {
        while let Some(result) = tasks.join_next().await {
            result??;
        }
        Ok(())
    })
}
