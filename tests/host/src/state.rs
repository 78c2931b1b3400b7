//! What one component instance sees of the host: its WASI context, its variables,
//! allowed hosts and stores, and the shared connections. A new `State` (and a new
//! `Store`) is made for every request or event, as Spin makes a fresh instance each time.

use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, OutgoingRequestConfig};
use wasmtime_wasi_http::p2::{HttpResult, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::outbound::AllowedHosts;
use crate::services::Services;
use crate::variables::ComponentVariables;

/// A component's settings from the manifest, resolved once at start-up.
#[derive(Debug)]
pub struct ComponentRuntime {
    pub id: String,
    pub variables: ComponentVariables,
    pub allowed_hosts: Arc<AllowedHosts>,
    pub key_value_stores: Vec<String>,
    pub environment: Vec<(String, String)>,
}

pub struct State {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub hooks: OutboundHttp,
    pub component: Arc<ComponentRuntime>,
    pub services: Arc<Services>,
    pub limits: wasmtime::StoreLimits,
}

impl State {
    pub fn new(
        component: Arc<ComponentRuntime>,
        services: Arc<Services>,
        max_memory: usize,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout().inherit_stderr();
        for (k, v) in &component.environment {
            wasi.env(k, v);
        }
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHttp {
                component: component.id.clone(),
                allowed: component.allowed_hosts.clone(),
            },
            component,
            services,
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

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP with Spin's rule: a request to a host outside
/// `allowed_outbound_hosts` fails with `HTTP-request-denied`.
pub struct OutboundHttp {
    component: String,
    allowed: Arc<AllowedHosts>,
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: hyper::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        let url = request.uri().to_string();
        if !self.allowed.allows(&url) {
            tracing::warn!(component = %self.component, %url, "outbound HTTP request to a host not in allowed_outbound_hosts");
            // As Spin: the denial arrives through the response future, not from `handle`.
            return Ok(HostFutureIncomingResponse::ready(Ok(Err(
                ErrorCode::HttpRequestDenied,
            ))));
        }
        Ok(wasmtime_wasi_http::p2::default_send_request(
            request, config,
        ))
    }
}
