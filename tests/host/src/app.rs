//! A loaded application: the engine, one pre-instantiated component per manifest entry,
//! the HTTP router, and the shared services. Everything a trigger needs to make a fresh
//! instance for one request or event, or (for WASIp3 HTTP components) to hand requests
//! to reused instances.
//!
//! The linker offers what Spin 4.0.2 offers: WASI 0.2 and WASI 0.3.0-rc-2026-03-15 side
//! by side (a spin-sdk 6 component built for wasm32-wasip2 imports both), outbound HTTP
//! in both, and Spin's interfaces in their blocking (spin-sdk 5.2) and async
//! (spin-sdk 6) versions.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::http_p3::HttpHandlerState;
use crate::instance_reuse::InstanceReuse;
use crate::manifest::{HttpRoute, Manifest};
use crate::outbound::AllowedHosts;
use crate::routes::Router;
use crate::runtime_config::RuntimeConfig;
use crate::services::Services;
use crate::state::{ComponentRuntime, State};
use crate::variables::{ApplicationVariables, ComponentVariables};

/// Linear memory one instance may use unless told otherwise: Spin's own limit (its pooling
/// allocator's `max_memory_size`, 4 GiB; `spin up` sets no lower one), so that a request
/// that fits on Spin fits here. `--max-instance-memory-mib` sets a lower cap, to see what
/// the components really need.
pub const SPIN_MAX_MEMORY_BYTES: usize = 4 << 30;

#[derive(Debug, Clone)]
pub struct HostOptions {
    pub manifest: PathBuf,
    pub runtime_config: Option<PathBuf>,
    /// Keep one Redis connection per address instead of one per `open`.
    pub shared_redis: bool,
    /// How many instances may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// Linear memory one instance may use, in bytes.
    pub max_instance_memory: usize,
    /// Extra variable values, as if given by `SPIN_VARIABLE_*` (they win over the
    /// process environment); lets tests run several apps with different settings.
    pub variables: HashMap<String, String>,
    /// How WASIp3 HTTP instances are reused (Spin's defaults unless set).
    pub instance_reuse: InstanceReuse,
    /// Run only these components and their triggers (`spin up --component-id`); empty
    /// runs them all.
    pub components: Vec<String>,
}

impl HostOptions {
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            runtime_config: None,
            shared_redis: false,
            max_instances: 200,
            max_instance_memory: SPIN_MAX_MEMORY_BYTES,
            variables: HashMap::new(),
            instance_reuse: InstanceReuse::default(),
            components: Vec::new(),
        }
    }
}

pub struct LoadedComponent {
    pub runtime: Arc<ComponentRuntime>,
    pub pre: InstancePre<State>,
    /// Set for components that export an HTTP handler.
    pub http: Option<HttpHandler>,
}

/// How a component answers HTTP, told apart by its export as Spin tells them apart.
pub enum HttpHandler {
    /// `wasi:http/incoming-handler@0.2.x`: a fresh instance per request.
    P2(wasmtime_wasi_http::p2::bindings::ProxyPre<State>),
    /// `wasi:http/handler@0.3.0-rc-2026-03-15`: reused instances.
    P3(wasmtime_wasi_http::handler::ProxyHandler<HttpHandlerState>),
}

impl HttpHandler {
    fn detect(
        pre: &InstancePre<State>,
        state: impl FnOnce() -> HttpHandlerState,
    ) -> Result<Option<Self>> {
        let p2 = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre.clone()).ok();
        let p3 = wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()).ok();
        Ok(match (p2, p3) {
            (Some(_), Some(_)) => bail!(
                "component exports multiple different handlers but it's expected to export only one"
            ),
            (Some(p2), None) => Some(HttpHandler::P2(p2)),
            (None, Some(p3)) => Some(HttpHandler::P3(
                wasmtime_wasi_http::handler::ProxyHandler::new(
                    state(),
                    wasmtime_wasi_http::handler::ProxyPre::P3(p3),
                ),
            )),
            (None, None) => None,
        })
    }
}

pub struct App {
    pub engine: Engine,
    pub manifest: Manifest,
    pub manifest_dir: PathBuf,
    pub components: HashMap<String, LoadedComponent>,
    pub router: Router,
    pub services: Arc<Services>,
    pub variables: ApplicationVariables,
    max_instance_memory: usize,
}

impl App {
    pub async fn load(options: &HostOptions) -> Result<Arc<App>> {
        let mut manifest = Manifest::load(&options.manifest)?;
        if !options.components.is_empty() {
            manifest.retain_components(&options.components)?;
        }
        let manifest_dir = options
            .manifest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let runtime_config = match &options.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let variables = ApplicationVariables::resolve(&manifest, options.variables.clone())?;

        let engine = engine(options.max_instances, options.max_instance_memory)?;
        let linker = linker(&engine)?;
        let services = Arc::new(Services::new(&runtime_config, options.shared_redis));

        let mut components = HashMap::new();
        // Components that share a source (the job-* components) are compiled once.
        let mut compiled: HashMap<PathBuf, Component> = HashMap::new();
        for (id, decl) in &manifest.component {
            if !decl.files.is_empty() {
                bail!("component {id:?}: `files` are not supported by this host");
            }
            for label in &decl.key_value_stores {
                if services.kv_store(label).is_none() {
                    bail!("component {id:?} uses key-value store {label:?}, which the runtime config does not define");
                }
            }
            let allowed: Vec<String> = decl
                .allowed_outbound_hosts
                .iter()
                .map(|h| variables.expand(h))
                .collect::<Result<_>>()?;
            let runtime = Arc::new(ComponentRuntime {
                id: id.clone(),
                variables: Arc::new(
                    ComponentVariables::new(&variables, &decl.variables)
                        .with_context(|| format!("component {id:?}"))?,
                ),
                allowed_hosts: Arc::new(
                    AllowedHosts::parse(&allowed).with_context(|| format!("component {id:?}"))?,
                ),
                key_value_stores: decl.key_value_stores.clone().into(),
                environment: decl.environment.clone().into_iter().collect(),
            });
            let path = manifest.component_path(&manifest_dir, id)?;
            let component = match compiled.get(&path) {
                Some(component) => component.clone(),
                None => {
                    let component = Component::from_file(&engine, &path)
                        .map_err(anyhow::Error::from)
                        .with_context(|| {
                            format!("loading component {id:?} from {}", path.display())
                        })?;
                    compiled.insert(path.clone(), component.clone());
                    component
                }
            };
            let pre = linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!(
                        "component {id:?} imports something this host (and Spin) does not provide"
                    )
                })?;
            let http = HttpHandler::detect(&pre, || HttpHandlerState {
                engine: engine.clone(),
                runtime: runtime.clone(),
                services: services.clone(),
                max_instance_memory: options.max_instance_memory,
                reuse: options.instance_reuse,
            })
            .with_context(|| format!("component {id:?}"))?;
            components.insert(id.clone(), LoadedComponent { runtime, pre, http });
        }

        let mut routes = Vec::new();
        for trigger in &manifest.trigger.http {
            match &trigger.route {
                HttpRoute::Pattern(route) => {
                    let loaded = &components[&trigger.component];
                    if loaded.http.is_none() {
                        bail!("component {:?} has an HTTP route but exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3.0-rc-2026-03-15", trigger.component);
                    }
                    routes.push((trigger.component.as_str(), route.as_str()));
                }
                HttpRoute::Private { private: true } => {}
                HttpRoute::Private { private: false } => {
                    bail!("route must be a pattern or {{ private = true }}")
                }
            }
        }
        let router = Router::build("/", routes)?;

        Ok(Arc::new(App {
            engine,
            manifest,
            manifest_dir,
            components,
            router,
            services,
            variables,
            max_instance_memory: options.max_instance_memory,
        }))
    }

    pub fn component(&self, id: &str) -> Result<&LoadedComponent> {
        self.components
            .get(id)
            .with_context(|| format!("no component {id:?}"))
    }

    /// A fresh store for one instance of `component`.
    pub fn store(&self, component: &LoadedComponent) -> Store<State> {
        new_store(
            &self.engine,
            &component.runtime,
            &self.services,
            self.max_instance_memory,
        )
    }
}

/// A fresh store for one instance of a component.
pub fn new_store(
    engine: &Engine,
    runtime: &ComponentRuntime,
    services: &Arc<Services>,
    max_instance_memory: usize,
) -> Store<State> {
    let mut store = Store::new(engine, State::new(runtime, services, max_instance_memory));
    store.limiter(|s| &mut s.limits);
    store
}

fn engine(max_instances: u32, max_memory: usize) -> Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances * 4)
        .total_memories(max_instances)
        .total_tables(max_instances * 4)
        .total_stacks(max_instances)
        .max_memory_size(max_memory)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_core_instances_per_component(16)
        .table_elements(20_000);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// Everything a component of this application may import: WASI 0.2 and 0.3, outbound
/// HTTP in both, and the Spin interfaces the host implements, each linked to its own
/// capability's state.
fn linker(engine: &Engine) -> Result<Linker<State>> {
    use crate::bindings as b;
    let mut linker = Linker::new(engine);
    let err = anyhow::Error::from;
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(err)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(err)?;

    use crate::spin_kv::KvData;
    use crate::spin_pg::PgData;
    use crate::spin_redis::RedisData;
    use crate::spin_variables::VariablesData;
    b::redis::fermyon::spin2_0_0::redis::add_to_linker::<State, RedisData>(&mut linker, |s| {
        &mut s.redis
    })
    .map_err(err)?;
    b::redis3::spin::redis::redis::add_to_linker::<State, RedisData>(&mut linker, |s| &mut s.redis)
        .map_err(err)?;
    b::variables::fermyon::spin2_0_0::variables::add_to_linker::<State, VariablesData>(
        &mut linker,
        |s| &mut s.variables,
    )
    .map_err(err)?;
    b::variables3::spin::variables::variables::add_to_linker::<State, VariablesData>(
        &mut linker,
        |s| &mut s.variables,
    )
    .map_err(err)?;
    b::key_value::fermyon::spin2_0_0::key_value::add_to_linker::<State, KvData>(&mut linker, |s| {
        &mut s.kv
    })
    .map_err(err)?;
    b::key_value3::spin::key_value::key_value::add_to_linker::<State, KvData>(&mut linker, |s| {
        &mut s.kv
    })
    .map_err(err)?;
    b::postgres::spin::postgres::postgres::add_to_linker::<State, PgData>(&mut linker, |s| {
        &mut s.pg
    })
    .map_err(err)?;
    // The cron worlds' types-only interfaces.
    for interface in crate::cron::CRON_TYPES_INTERFACES {
        linker.instance(interface).map_err(err)?;
    }
    Ok(linker)
}
