//! The Spin compatibility guard: every component the manifests name must import only
//! what Spin 3.4 provides (the `spin:up@3.4.0` platform world in the spin-sdk WIT, plus
//! the cron world's types) and export what its trigger calls. An imported interface that
//! holds only types (the Redis trigger's `fermyon:spin/redis-types`, say) needs no
//! provider: wasmtime's linker accepts it undefined, so any trigger runs such a component. The WASIp3 (spin-sdk 6) fixtures must do
//! the same for Spin 4.0 (`spin:up@4.0.0`: Spin 3.4's platform, the async Spin
//! interfaces and WASI 0.3.0-rc-2026-03-15); the WASIp2 application must run there too.
//!
//! Interface versions match as the component model links them (`0.2.6` and `0.2.0` are
//! the same `0.2` interface, `2.0.0` and `2.1.0` the same `2`), and an import may not be
//! newer than what Spin provides: for WASI 0.2, the newest `0.2.x` the spin-sdk WIT ships
//! (the SDK made for Spin 3.4 and later); for Spin's own interfaces, the version its
//! platform world names. Fixtures written in WAT show the guard refusing each kind of
//! component Spin would not run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use evolve_host::manifest::Manifest;
use wasmtime::component::Component;
use wasmtime::Engine;

/// `ns:pkg/iface@1.2.3` → `ns:pkg/iface@1`, `@0.2.6` → `@0.2`.
fn semver_key(name: &str) -> String {
    let Some((base, version)) = name.split_once('@') else {
        return name.to_string();
    };
    let parts: Vec<&str> = version.split(['.', '-']).collect();
    match parts.as_slice() {
        ["0", minor, ..] => format!("{base}@0.{minor}"),
        [major, ..] => format!("{base}@{major}"),
        [] => base.to_string(),
    }
}

/// The version part of an interface name (`ns:pkg/iface@1.2.3` → `1.2.3`).
fn version_of(name: &str) -> Option<semver::Version> {
    name.split_once('@')
        .and_then(|(_, v)| semver::Version::parse(v).ok())
}

/// What a Spin release offers a guest: semver key → newest version provided, and the
/// exports its triggers call.
struct Offered {
    spin: &'static str,
    imports: BTreeMap<String, Option<semver::Version>>,
    http_exports: &'static [&'static str],
    redis_exports: &'static [&'static str],
}

impl Offered {
    /// Why Spin would not link `name` for a component run by `trigger`, if it would not.
    fn refusal(&self, name: &str) -> Option<String> {
        let spin = self.spin;
        match self.imports.get(&semver_key(name)) {
            None => Some(format!(
                "imports {name}, which Spin {spin} does not provide"
            )),
            Some(Some(newest)) => match version_of(name) {
                Some(wanted) if wanted > *newest => Some(format!(
                    "imports {name}, newer than the {newest} Spin {spin} provides"
                )),
                // A prerelease links only to that very prerelease.
                Some(wanted)
                    if (!wanted.pre.is_empty() || !newest.pre.is_empty()) && wanted != *newest =>
                {
                    Some(format!(
                        "imports {name}, but Spin {spin} provides only {newest}"
                    ))
                }
                _ => None,
            },
            Some(None) => None,
        }
    }

    /// Offers `name` (at least at its version).
    fn offer(&mut self, name: &str) {
        let version = version_of(name);
        let entry = self.imports.entry(semver_key(name)).or_insert(None);
        if version > *entry {
            *entry = version;
        }
    }
}

/// The Redis trigger's types interface (unversioned `fermyon:spin`).
const REDIS_TYPES: &str = "fermyon:spin/redis-types";

/// The imports Spin 3.4 offers a guest: the `spin:up@3.4.0` platform, the cron world's
/// types and, for Redis-triggered components, the types of the (unversioned)
/// `fermyon:spin/redis-trigger` world.
fn spin_3_4() -> Offered {
    let mut resolve = wit_parser::Resolve {
        all_features: true,
        ..Default::default()
    };
    resolve
        .push_dir(Path::new(env!("SPIN_SDK_WIT")))
        .expect("parsing the spin-sdk WIT");
    let version = semver::Version::new(3, 4, 0);
    let (_, package) = resolve
        .packages
        .iter()
        .find(|(_, p)| {
            p.name.namespace == "spin"
                && p.name.name == "up"
                && p.name.version.as_ref() == Some(&version)
        })
        .expect("spin:up@3.4.0 is not in the spin-sdk WIT");
    // The newest release of each WASI 0.2 package the WIT ships.
    let mut newest_wasi: BTreeMap<String, semver::Version> = BTreeMap::new();
    for (_, p) in resolve.packages.iter() {
        if let Some(v) = &p.name.version {
            if p.name.namespace == "wasi" && v.major == 0 && v.minor == 2 && v.pre.is_empty() {
                let entry = newest_wasi
                    .entry(p.name.name.clone())
                    .or_insert_with(|| v.clone());
                if v > entry {
                    *entry = v.clone();
                }
            }
        }
    }
    let mut imports = BTreeMap::new();
    for key in resolve.worlds[package.worlds["platform"]].imports.keys() {
        let wit_parser::WorldKey::Interface(id) = key else {
            continue;
        };
        let Some(name) = resolve.id_of(*id) else {
            continue;
        };
        let iface = &resolve.interfaces[*id];
        let package = &resolve.packages[iface.package.expect("named interfaces have a package")];
        let newest = match (&package.name.version, newest_wasi.get(&package.name.name)) {
            (Some(v), Some(newest))
                if package.name.namespace == "wasi" && v.major == 0 && v.minor == 2 =>
            {
                Some(newest.clone())
            }
            (version, _) => version.clone(),
        };
        imports.insert(semver_key(&name), newest);
    }
    imports.insert(
        semver_key(evolve_host::cron::CRON_TYPES_INTERFACE),
        version_of(evolve_host::cron::CRON_TYPES_INTERFACE),
    );
    let (_, legacy) = resolve
        .packages
        .iter()
        .find(|(_, p)| {
            p.name.namespace == "fermyon" && p.name.name == "spin" && p.name.version.is_none()
        })
        .expect("fermyon:spin (unversioned) is not in the spin-sdk WIT");
    let trigger_imports: Vec<String> = resolve.worlds[legacy.worlds["redis-trigger"]]
        .imports
        .keys()
        .filter_map(|key| match key {
            wit_parser::WorldKey::Interface(id) => resolve.id_of(*id),
            wit_parser::WorldKey::Name(n) => Some(n.clone()),
        })
        .collect();
    assert!(
        trigger_imports.iter().any(|n| n == REDIS_TYPES),
        "the redis-trigger world no longer imports {REDIS_TYPES}: {trigger_imports:?}"
    );
    imports.insert(REDIS_TYPES.to_string(), None);
    Offered {
        spin: "3.4",
        imports,
        http_exports: &["wasi:http/incoming-handler@0.2"],
        redis_exports: &["fermyon:spin/inbound-redis"],
    }
}

/// The interfaces a world of `resolve` imports, by full name.
fn world_imports(resolve: &wit_parser::Resolve, world: wit_parser::WorldId) -> Vec<String> {
    resolve.worlds[world]
        .imports
        .keys()
        .filter_map(|key| match key {
            wit_parser::WorldKey::Interface(id) => resolve.id_of(*id),
            wit_parser::WorldKey::Name(_) => None,
        })
        .collect()
}

/// The imports Spin 4.0 offers a guest, as its `spin:up@4.0.0` platform world lists
/// them: all of Spin 3.4's; the async Spin interfaces, read from the worlds of the
/// spin-sdk 6 WIT; WASI 0.3.0-rc-2026-03-15 (CLI, clocks, filesystem, random, sockets,
/// HTTP types and client), read from the WIT of the wasmtime-wasi-http that implements
/// it; and the async cron world's types.
fn spin_4_0() -> Offered {
    let mut offered = spin_3_4();
    offered.spin = "4.0";
    offered.http_exports = &["wasi:http/incoming-handler@0.2", "wasi:http/handler@0.3"];
    offered.redis_exports = &["fermyon:spin/inbound-redis", "spin:redis/inbound-redis@3"];

    let mut sdk6 = wit_parser::Resolve {
        all_features: true,
        ..Default::default()
    };
    let (package, _) = sdk6
        .push_dir(Path::new(env!("SPIN_SDK6_WIT")))
        .expect("parsing the spin-sdk 6 WIT");
    for world in sdk6.packages[package].worlds.values() {
        for name in world_imports(&sdk6, *world) {
            offered.offer(&name);
        }
    }

    let mut wasi = wit_parser::Resolve {
        all_features: true,
        ..Default::default()
    };
    wasi.push_dir(Path::new(env!("WASI_P3_WIT")))
        .expect("parsing the WASI 0.3 WIT");
    let rc = semver::Version::parse("0.3.0-rc-2026-03-15").unwrap();
    let mut rc_interfaces = 0;
    for (id, iface) in wasi.interfaces.iter() {
        let package = &wasi.packages[iface.package.expect("named interfaces have a package")];
        if package.name.namespace == "wasi" && package.name.version.as_ref() == Some(&rc) {
            let name = wasi.id_of(id).expect("a named interface");
            // The handler is what an HTTP component exports, not something it imports.
            if !name.starts_with("wasi:http/handler@") {
                offered.offer(&name);
                rc_interfaces += 1;
            }
        }
    }
    assert!(
        rc_interfaces > 10,
        "the WASI 0.3 WIT has only {rc_interfaces} rc interfaces"
    );
    offered.offer(evolve_host::cron::CRON3_TYPES_INTERFACE);
    offered
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Trigger {
    Http,
    Cron,
    Redis,
}

/// Every component of a manifest with the trigger that runs it.
fn components(manifest_path: &Path) -> Vec<(String, std::path::PathBuf, Trigger)> {
    let manifest = Manifest::load(manifest_path).unwrap();
    let dir = manifest_path.parent().unwrap();
    let mut out = Vec::new();
    for id in manifest.component.keys() {
        let trigger = if manifest.trigger.cron.iter().any(|t| &t.component == id) {
            Trigger::Cron
        } else if manifest.trigger.redis.iter().any(|t| &t.component == id) {
            Trigger::Redis
        } else {
            Trigger::Http
        };
        out.push((
            id.clone(),
            manifest.component_path(dir, id).unwrap(),
            trigger,
        ));
    }
    out
}

fn check(manifest_path: &Path) -> Vec<String> {
    check_on(&spin_3_4(), manifest_path)
}

/// An engine that loads WASIp3 components too.
fn engine() -> Engine {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model_async(true);
    Engine::new(&config).unwrap()
}

fn check_on(offered: &Offered, manifest_path: &Path) -> Vec<String> {
    let engine = engine();
    let mut problems = Vec::new();
    for (id, path, trigger) in components(manifest_path) {
        let component = Component::from_file(&engine, &path).unwrap_or_else(|e| {
            panic!(
                "{id}: cannot load {}: {e:?} (run scripts/build)",
                path.display()
            )
        });
        problems.extend(check_component(offered, &engine, &id, &component, trigger));
    }
    problems
}

fn check_component(
    offered: &Offered,
    engine: &Engine,
    id: &str,
    component: &Component,
    trigger: Trigger,
) -> Vec<String> {
    let mut problems = Vec::new();
    let ty = component.component_type();
    for (name, item) in ty.imports(engine) {
        if !needs_provider(engine, &item) {
            continue;
        }
        if let Some(refusal) = offered.refusal(name) {
            problems.push(format!("{id} {refusal}"));
        }
    }
    let exports: BTreeSet<String> = ty.exports(engine).map(|(n, _)| semver_key(n)).collect();
    let wanted: &[&str] = match trigger {
        Trigger::Http => offered.http_exports,
        Trigger::Cron => &["handle-cron-event"],
        Trigger::Redis => offered.redis_exports,
    };
    if !wanted.iter().any(|w| exports.contains(*w)) {
        let wanted = wanted.join(" or ");
        problems.push(format!(
            "{id} ({trigger:?} trigger) does not export {wanted}; it exports {exports:?}"
        ));
    }
    problems
}

#[test]
fn the_wasip2_build_runs_on_spin_3_4() {
    let problems = check(&crate::common::workspace().join("spin.p2.toml"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_test_fixtures_run_on_spin_3_4() {
    let problems = check(&crate::common::workspace().join("tests/fixtures/spin.toml"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_application_runs_on_spin_4_0() {
    let problems = check_on(&spin_4_0(), &crate::common::workspace().join("spin.toml"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_p3_fixtures_run_on_spin_4_0_and_not_on_3_4() {
    let manifest = crate::common::workspace().join("tests/fixtures/spin-p3.toml");
    let problems = check_on(&spin_4_0(), &manifest);
    assert!(problems.is_empty(), "{problems:#?}");
    let problems = check(&manifest);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("wasi:http/client@0.3.0-rc-2026-03-15")),
        "{problems:#?}"
    );
}

#[test]
fn the_spin_4_0_guard_rejects_what_spin_4_0_lacks() {
    let offered = spin_4_0();
    let engine = Engine::default();
    let check = |imports: &[&str]| {
        check_component(
            &offered,
            &engine,
            "fixture",
            &fixture(&engine, imports, true),
            Trigger::Http,
        )
    };
    assert_eq!(
        check(&[
            "wasi:cli/environment@0.2.6",
            "wasi:http/client@0.3.0-rc-2026-03-15",
            "wasi:clocks/monotonic-clock@0.3.0-rc-2026-03-15",
            "spin:postgres/postgres@4.2.0",
            "spin:redis/redis@3.0.0",
            "spin:key-value/key-value@3.0.0",
            "spin:variables/variables@3.0.0",
            "fermyon:spin/redis@2.0.0",
        ]),
        Vec::<String>::new()
    );
    for (import, reason) in [
        ("wasi:http/client@0.3.0", "newer than"),
        ("wasi:http/client@0.3.0-rc-2026-01-06", "provides only"),
        ("spin:postgres/postgres@4.3.0", "newer than"),
        ("spin:redis/redis@4.0.0", "does not provide"),
    ] {
        let problems = check(&[import]);
        assert!(
            problems.iter().any(|p| p.contains(reason)),
            "{import}: expected a refusal containing {reason:?}, got {problems:?}"
        );
    }
}

/// Whether the host must define an import: an instance holding only types does not
/// (wasmtime type-checks it against nothing), one with a function or resource does.
fn needs_provider(engine: &Engine, item: &wasmtime::component::types::ComponentItem) -> bool {
    use wasmtime::component::types::ComponentItem;
    match item {
        ComponentItem::ComponentInstance(instance) => instance
            .exports(engine)
            .any(|(_, export)| !matches!(export, ComponentItem::Type(_))),
        _ => true,
    }
}

/// A component importing `imports` (each an instance exporting one function) and
/// exporting the HTTP handler when `http` is set.
fn fixture(engine: &Engine, imports: &[&str], http: bool) -> Component {
    let mut wat = String::from("(component\n");
    for name in imports {
        wat.push_str(&format!(
            "  (import \"{name}\" (instance (export \"f\" (func))))\n"
        ));
    }
    if http {
        wat.push_str(
            "  (core module $m (func (export \"handle\")))\n\
             (core instance $i (instantiate $m))\n\
             (type $t (func))\n\
             (func $handle (type $t) (canon lift (core func $i \"handle\")))\n\
             (instance $handler (export \"handle\" (func $handle)))\n\
             (export \"wasi:http/incoming-handler@0.2.0\" (instance $handler))\n",
        );
    }
    wat.push(')');
    Component::new(engine, &wat).unwrap_or_else(|e| panic!("fixture WAT: {e:?}\n{wat}"))
}

#[test]
fn the_guard_rejects_what_spin_lacks() {
    let offered = spin_3_4();
    let engine = Engine::default();
    let check = |imports: &[&str], http: bool, trigger: Trigger| {
        check_component(
            &offered,
            &engine,
            "fixture",
            &fixture(&engine, imports, http),
            trigger,
        )
    };

    // Accepted: what Spin 3.4 provides, at or below its versions.
    assert_eq!(
        check(
            &[
                "wasi:cli/environment@0.2.0",
                "wasi:cli/environment@0.2.6",
                "fermyon:spin/redis@2.0.0",
                "spin:postgres/postgres@4.0.0",
            ],
            true,
            Trigger::Http
        ),
        Vec::<String>::new()
    );

    // Refused, each for its own reason.
    let refused: &[(&[&str], bool, Trigger, &str)] = &[
        (
            &["wasi:cli/environment@0.2.9"],
            true,
            Trigger::Http,
            "newer than the 0.2.6",
        ),
        (
            &["wasi:http/handler@0.3.0-rc-2026-03-15"],
            true,
            Trigger::Http,
            "does not provide",
        ),
        (
            &["spin:postgres/postgres@4.2.0"],
            true,
            Trigger::Http,
            "newer than the 4.0.0",
        ),
        (
            &["wasi:nn/inference@0.2.0"],
            true,
            Trigger::Http,
            "does not provide",
        ),
        (
            &[],
            false,
            Trigger::Http,
            "does not export wasi:http/incoming-handler@0.2",
        ),
        (
            &[],
            true,
            Trigger::Cron,
            "does not export handle-cron-event",
        ),
    ];
    for (imports, http, trigger, reason) in refused {
        let problems = check(imports, *http, *trigger);
        assert!(
            problems.iter().any(|p| p.contains(reason)),
            "{imports:?} ({trigger:?}): expected a refusal containing {reason:?}, got {problems:?}"
        );
    }
    // The Redis trigger's types are fine where the Redis trigger runs the component.
    let redis = check(&[REDIS_TYPES], false, Trigger::Redis);
    assert!(!redis.iter().any(|p| p.contains(REDIS_TYPES)), "{redis:?}");
    // An interface of types only needs no provider, whatever runs the component (a
    // cron-triggered build that also exports the Redis handler imports redis-types).
    let wat = "(component (import \"acme:shapes/only-types\" (instance \
               (type $p (list u8)) (export \"payload\" (type (eq $p))))))";
    let types_only = Component::new(&engine, wat).unwrap();
    let problems = check_component(&offered, &engine, "fixture", &types_only, Trigger::Cron);
    assert!(
        !problems.iter().any(|p| p.contains("acme:shapes")),
        "{problems:?}"
    );
    // The same name with a function in it must be provided, and is not.
    let with_func = check(&["acme:shapes/only-types"], true, Trigger::Http);
    assert!(
        with_func.iter().any(|p| p.contains("does not provide")),
        "{with_func:?}"
    );

    assert_eq!(
        semver_key("wasi:cli/environment@0.2.6"),
        "wasi:cli/environment@0.2"
    );
    assert_eq!(
        semver_key("fermyon:spin/redis@2.0.0"),
        "fermyon:spin/redis@2"
    );
}
