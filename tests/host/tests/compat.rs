//! The Spin compatibility guard: every component the manifests name must import only
//! what Spin 3.4 provides (the `spin:up@3.4.0` platform world in the spin-sdk WIT, plus
//! the cron world's types) and export what its trigger calls.
//!
//! Interface versions compare as the component model links them: `0.2.6` and `0.2.0`
//! are the same `0.2` interface, `2.0.0` and `2.1.0` the same `2`.

mod common;

use std::collections::BTreeSet;
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

/// The imports Spin 3.4 offers a guest, by semver key: the `spin:up@3.4.0` platform,
/// the cron world's types and, for Redis-triggered components, the types of the
/// (unversioned) `fermyon:spin/redis-trigger` world.
fn spin_3_4_imports() -> BTreeSet<String> {
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
    let imports = |world: wit_parser::WorldId| -> BTreeSet<String> {
        resolve.worlds[world]
            .imports
            .keys()
            .filter_map(|key| match key {
                wit_parser::WorldKey::Interface(id) => resolve.id_of(*id).map(|n| semver_key(&n)),
                wit_parser::WorldKey::Name(n) => Some(n.clone()),
            })
            .collect()
    };
    let mut names = imports(package.worlds["platform"]);
    names.insert(semver_key(evolve_host::cron::CRON_TYPES_INTERFACE));
    let (_, legacy) = resolve
        .packages
        .iter()
        .find(|(_, p)| {
            p.name.namespace == "fermyon" && p.name.name == "spin" && p.name.version.is_none()
        })
        .expect("fermyon:spin (unversioned) is not in the spin-sdk WIT");
    names.insert("fermyon:spin/redis-types".to_string());
    assert!(
        imports(legacy.worlds["redis-trigger"]).contains("fermyon:spin/redis-types"),
        "the redis-trigger world no longer imports redis-types"
    );
    names
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
    let allowed = spin_3_4_imports();
    let engine = Engine::default();
    let mut problems = Vec::new();
    for (id, path, trigger) in components(manifest_path) {
        let component = Component::from_file(&engine, &path).unwrap_or_else(|e| {
            panic!(
                "{id}: cannot load {}: {e:?} (run scripts/build)",
                path.display()
            )
        });
        let ty = component.component_type();
        for (name, _) in ty.imports(&engine) {
            if !allowed.contains(&semver_key(name)) {
                problems.push(format!(
                    "{id} imports {name}, which Spin 3.4 does not provide"
                ));
            }
        }
        let exports: BTreeSet<String> = ty.exports(&engine).map(|(n, _)| semver_key(n)).collect();
        let wanted = match trigger {
            Trigger::Http => "wasi:http/incoming-handler@0.2",
            Trigger::Cron => "handle-cron-event",
            Trigger::Redis => "fermyon:spin/inbound-redis",
        };
        if !exports.contains(wanted) {
            problems.push(format!(
                "{id} ({trigger:?} trigger) does not export {wanted}; it exports {exports:?}"
            ));
        }
    }
    problems
}

#[test]
fn the_application_runs_on_spin_3_4() {
    let problems = check(&common::workspace().join("spin.toml"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_test_fixtures_run_on_spin_3_4() {
    let problems = check(&common::workspace().join("tests/fixtures/spin.toml"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_guard_rejects_what_spin_lacks() {
    let allowed = spin_3_4_imports();
    assert!(allowed.contains("fermyon:spin/redis@2"));
    assert!(allowed.contains("spin:postgres/postgres@4"));
    assert!(allowed.contains("wasi:cli/environment@0.2"));
    assert!(allowed.contains("wasi:http/outgoing-handler@0.2"));
    // Interfaces newer than Spin 3.4 or never provided by it.
    assert!(!allowed.contains("wasi:http/handler@0.3"));
    assert!(!allowed.contains("wasi:nn/inference@0.2"));
    assert_eq!(
        semver_key("wasi:cli/environment@0.2.6"),
        "wasi:cli/environment@0.2"
    );
    assert_eq!(
        semver_key("fermyon:spin/redis@2.0.0"),
        "fermyon:spin/redis@2"
    );
}
