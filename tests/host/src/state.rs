//! What one component instance sees of the host, split by capability as Spin splits it
//! into factors: WASI and outbound HTTP (`outbound_http`), Redis (`spin_redis`),
//! PostgreSQL (`spin_pg`), key-value (`spin_kv`) and variables (`spin_variables`). Each
//! capability keeps its own state and resource table, and reaches shared connections
//! only through a small trait, so its host logic can be tested without a component.
//!
//! A WASIp2 component gets a new `State` (and `Store`) for every request or event, as
//! Spin makes a fresh instance each time; a WASIp3 HTTP component's `State` lives as
//! long as its reused instance.

use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::outbound::AllowedHosts;
use crate::outbound_http::OutboundHttp;
use crate::services::Services;
use crate::spin_kv::KvState;
use crate::spin_pg::PgState;
use crate::spin_redis::RedisState;
use crate::spin_variables::VariablesState;
use crate::variables::ComponentVariables;

/// A component's settings from the manifest, resolved once at start-up.
#[derive(Debug)]
pub struct ComponentRuntime {
    pub id: String,
    pub variables: Arc<ComponentVariables>,
    pub allowed_hosts: Arc<AllowedHosts>,
    pub key_value_stores: Arc<[String]>,
    pub environment: Vec<(String, String)>,
}

pub struct State {
    pub wasi: WasiCtx,
    /// WASI's and wasi:http's resources.
    pub table: ResourceTable,
    pub http: WasiHttpCtx,
    pub outbound_http: OutboundHttp,
    pub redis: RedisState,
    pub pg: PgState,
    pub kv: KvState,
    pub variables: VariablesState,
    pub limits: wasmtime::StoreLimits,
}

impl State {
    pub fn new(component: &ComponentRuntime, services: &Arc<Services>, max_memory: usize) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout().inherit_stderr();
        for (k, v) in &component.environment {
            wasi.env(k, v);
        }
        Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound_http: OutboundHttp::new(&component.id, component.allowed_hosts.clone()),
            redis: RedisState::new(
                &component.id,
                component.allowed_hosts.clone(),
                services.clone(),
            ),
            pg: PgState::new(
                &component.id,
                component.allowed_hosts.clone(),
                services.clone(),
            ),
            kv: KvState::new(component.key_value_stores.clone(), services.clone()),
            variables: VariablesState::new(component.variables.clone()),
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(max_memory)
                .trap_on_grow_failure(false)
                .build(),
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::p2::WasiHttpView for State {
    fn http(&mut self) -> wasmtime_wasi_http::p2::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::p2::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound_http,
        }
    }
}

impl wasmtime_wasi_http::p3::WasiHttpView for State {
    fn http(&mut self) -> wasmtime_wasi_http::p3::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::p3::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound_http,
        }
    }
}
