//! Finds the Spin WIT that ships inside the `spin-sdk` package the components use, and
//! links it where `bindgen!` (whose `path` must be a literal) expects it: `wit-deps/spin`.
//! The WIT is never copied into the repository; the link is made anew on every build.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir.join("../..");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../Cargo.lock");

    let wit = spin_sdk_wit(&workspace)?;
    let deps = manifest_dir.join("wit-deps");
    std::fs::create_dir_all(&deps)?;
    let link = deps.join("spin");
    if std::fs::read_link(&link).ok().as_deref() != Some(wit.as_path()) {
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir_all(&link);
        std::os::unix::fs::symlink(&wit, &link)
            .with_context(|| format!("linking {} to {}", link.display(), wit.display()))?;
    }
    println!("cargo:rustc-env=SPIN_SDK_WIT={}", wit.display());
    Ok(())
}

/// The `wit/` folder of the `spin-sdk` package the workspace's lock file pins: looked up
/// in Cargo's registry sources, and fetched through `cargo metadata` when not there yet.
fn spin_sdk_wit(workspace: &Path) -> Result<PathBuf> {
    let lock =
        std::fs::read_to_string(workspace.join("Cargo.lock")).context("reading Cargo.lock")?;
    let version = locked_version(&lock, "spin-sdk").context("spin-sdk is not in Cargo.lock")?;
    if let Some(wit) = registry_wit(&version)? {
        return Ok(wit);
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
        if package["name"] == "spin-sdk" && package["version"] == version.as_str() {
            let manifest = PathBuf::from(package["manifest_path"].as_str().context("path")?);
            return Ok(manifest.parent().context("parent")?.join("wit"));
        }
    }
    bail!("spin-sdk {version} was not found in the workspace metadata")
}

fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let version = lines
                .next()?
                .trim()
                .strip_prefix("version = \"")?
                .strip_suffix('"')?;
            return Some(version.to_string());
        }
    }
    None
}

fn registry_wit(version: &str) -> Result<Option<PathBuf>> {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("no CARGO_HOME or HOME")?;
    let Ok(registries) = std::fs::read_dir(home.join("registry/src")) else {
        return Ok(None);
    };
    for registry in registries.flatten() {
        let wit = registry.path().join(format!("spin-sdk-{version}/wit"));
        if wit.join("world.wit").exists() {
            return Ok(Some(wit));
        }
    }
    Ok(None)
}
