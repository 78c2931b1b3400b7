//! Finds the Spin WIT that ships inside the `spin-sdk` packages the components use, and
//! links it where `bindgen!` (whose `path` must be a literal) expects it: spin-sdk 5.x
//! (WASIp2, Spin 3.x interfaces) at `wit-deps/spin`, spin-sdk 6.x (WASIp3, Spin 4.0's
//! async interfaces) at `wit-deps/spin6`. The workspace depends on both, so Cargo.lock
//! names `spin-sdk` twice; each link follows its major version. The WIT is never copied
//! into the repository; the links are made anew on every build.
//!
//! It also tells the compatibility test where the WASI 0.3.0-rc-2026-03-15 WIT of the
//! locked `wasmtime-wasi-http` is (`WASI_P3_WIT`), part of what Spin 4.0 offers.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir.join("../..");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    // The links live outside `target/`: a checkout without them (a fresh clone sharing a
    // build directory) makes them again.
    println!("cargo:rerun-if-changed=wit-deps/spin");
    println!("cargo:rerun-if-changed=wit-deps/spin6");

    let deps = manifest_dir.join("wit-deps");
    std::fs::create_dir_all(&deps)?;
    for (major, name, env) in [
        ("5", "spin", "SPIN_SDK_WIT"),
        ("6", "spin6", "SPIN_SDK6_WIT"),
    ] {
        let wit = package_dir(&workspace, "spin-sdk", major, "wit/deps")?.join("wit");
        let link = deps.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(wit.as_path()) {
            let _ = std::fs::remove_file(&link);
            let _ = std::fs::remove_dir_all(&link);
            std::os::unix::fs::symlink(&wit, &link)
                .with_context(|| format!("linking {} to {}", link.display(), wit.display()))?;
        }
        println!("cargo:rustc-env={env}={}", wit.display());
    }
    let p3 = package_dir(&workspace, "wasmtime-wasi-http", "", "src/p3/wit/deps")?;
    println!(
        "cargo:rustc-env=WASI_P3_WIT={}",
        p3.join("src/p3/wit").display()
    );
    Ok(())
}

/// The source folder of package `name` (of major version `major`, or any when empty)
/// that the workspace's lock file pins: looked up in Cargo's registry sources (`probe`
/// must exist in it), and fetched through `cargo metadata` when not there yet.
fn package_dir(workspace: &Path, name: &str, major: &str, probe: &str) -> Result<PathBuf> {
    let lock =
        std::fs::read_to_string(workspace.join("Cargo.lock")).context("reading Cargo.lock")?;
    let version = locked_version(&lock, name, major)
        .with_context(|| format!("{name} {major}.x is not in Cargo.lock"))?;
    if let Some(dir) = registry_dir(name, &version, probe)? {
        return Ok(dir);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    for package in metadata["packages"].as_array().context("no packages")? {
        if package["name"] == name && package["version"] == version.as_str() {
            let manifest = PathBuf::from(package["manifest_path"].as_str().context("path")?);
            return Ok(manifest.parent().context("parent")?.to_path_buf());
        }
    }
    bail!("{name} {version} was not found in the workspace metadata")
}

fn locked_version(lock: &str, name: &str, major: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let version = lines
                .next()?
                .trim()
                .strip_prefix("version = \"")?
                .strip_suffix('"')?;
            if major.is_empty() || version.split('.').next() == Some(major) {
                return Some(version.to_string());
            }
        }
    }
    None
}

fn registry_dir(name: &str, version: &str, probe: &str) -> Result<Option<PathBuf>> {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("no CARGO_HOME or HOME")?;
    let Ok(registries) = std::fs::read_dir(home.join("registry/src")) else {
        return Ok(None);
    };
    for registry in registries.flatten() {
        let dir = registry.path().join(format!("{name}-{version}"));
        if dir.join(probe).is_dir() {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}
