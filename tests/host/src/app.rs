//! A loaded application: the engine, one pre-instantiated component per manifest entry,
//! the HTTP router, and the shared services. Everything a trigger needs to make a fresh
//! instance for one request or event.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

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
        }
    }
}

pub struct LoadedComponent {
    pub runtime: Arc<ComponentRuntime>,
    pub pre: InstancePre<State>,
    /// Set for components that export `wasi:http/incoming-handler`.
    pub proxy: Option<wasmtime_wasi_http::p2::bindings::ProxyPre<State>>,
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
        let manifest = Manifest::load(&options.manifest)?;
        let manifest_dir = options
            .manifest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let runtime_config = match &options.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let env_overrides = options.variables.clone();
        let variables = ApplicationVariables::resolve(&manifest, |name| {
            env_overrides
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        })?;

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
                variables: ComponentVariables::new(&variables, &decl.variables)
                    .with_context(|| format!("component {id:?}"))?,
                allowed_hosts: Arc::new(
                    AllowedHosts::parse(&allowed).with_context(|| format!("component {id:?}"))?,
                ),
                key_value_stores: decl.key_value_stores.clone(),
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
            let proxy = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre.clone()).ok();
            components.insert(
                id.clone(),
                LoadedComponent {
                    runtime,
                    pre,
                    proxy,
                },
            );
        }

        let mut routes = Vec::new();
        for trigger in &manifest.trigger.http {
            match &trigger.route {
                HttpRoute::Pattern(route) => {
                    let loaded = &components[&trigger.component];
                    if loaded.proxy.is_none() {
                        bail!("component {:?} has an HTTP route but does not export wasi:http/incoming-handler", trigger.component);
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
        let mut store = Store::new(
            &self.engine,
            State::new(
                component.runtime.clone(),
                self.services.clone(),
                self.max_instance_memory,
            ),
        );
        store.limiter(|s| &mut s.limits);
        store
    }
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
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// Everything a component of this application may import: WASI 0.2, outbound HTTP,
/// and the Spin interfaces the host implements.
fn linker(engine: &Engine) -> Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    let err = anyhow::Error::from;
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
    crate::bindings::redis::fermyon::spin2_0_0::redis::add_to_linker::<State, HasSelf<State>>(
        &mut linker,
        |s| s,
    )
    .map_err(err)?;
    crate::bindings::variables::fermyon::spin2_0_0::variables::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(err)?;
    crate::bindings::key_value::fermyon::spin2_0_0::key_value::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(err)?;
    crate::bindings::postgres::spin::postgres4_0_0::postgres::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(err)?;
    // The cron world's types-only interface.
    linker
        .instance(crate::cron::CRON_TYPES_INTERFACE)
        .map_err(err)?;
    Ok(linker)
}
