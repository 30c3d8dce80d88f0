//! Builds the guest crates (shipped plugins and test fixtures) for
//! `wasm32-wasip2` so `cargo run` and `cargo test` need no extra step, and
//! tells rustc where the components are so the binary can embed the shipped
//! ones. Same approach as wasmtime's `test-programs` artifacts crate: a nested
//! cargo with its own target directory, so it never waits on the outer build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest crates, the env var that carries each component's path, and its file name.
const GUESTS: &[(&str, &str, &str)] = &[
    ("wasmclaw-plugin-echo", "WASMCLAW_PLUGIN_ECHO", "wasmclaw_plugin_echo.wasm"),
    ("wasmclaw-plugin-assistant", "WASMCLAW_PLUGIN_ASSISTANT", "wasmclaw_plugin_assistant.wasm"),
    ("wasmclaw-fixture-faults", "WASMCLAW_FIXTURE_FAULTS", "wasmclaw_fixture_faults.wasm"),
    ("wasmclaw-fixture-not-an-agent", "WASMCLAW_FIXTURE_NOT_AN_AGENT", "not-an-agent.wasm"),
];

/// Stack of the shipped guests (Rust's wasm default is 1 MiB).
const GUEST_STACK_BYTES: usize = 128 << 10;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for dir in ["wit", "guest-sdk", "plugins", "tests/fixtures", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2", "--locked"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _, _) in GUESTS {
        cmd.args(["--package", package]);
    }
    // The outer build's flags and wrappers (clippy, coverage, native
    // target-cpu) do not apply to wasm guests.
    for var in
        ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER", "RUSTC_WRAPPER", "CARGO_BUILD_TARGET"]
    {
        cmd.env_remove(var);
    }
    // Every run starts from a fresh instance whose memory the pool zeroes on
    // reuse; a 1 MiB default stack makes that the biggest cost of a run.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", format!("-Clink-arg=-zstack-size={GUEST_STACK_BYTES}"));
    let status = cmd.status().expect("failed to run cargo for the wasm guests");
    if !status.success() {
        panic!(
            "building the wasm guests failed ({status}); is the wasm32-wasip2 target installed? \
             `rustup target add wasm32-wasip2`"
        );
    }

    let out = target_dir.join("wasm32-wasip2").join("guest");
    for (_, var, file) in GUESTS {
        let file = out.join(file);
        assert!(Path::new(&file).exists(), "missing guest component {}", file.display());
        println!("cargo:rustc-env={var}={}", file.display());
    }

    embed_sdk(&root);
}

/// Write `$OUT_DIR/sdk_files.rs`: every file of the SDK (with a manifest of
/// its own, no workspace inheritance) and of the contract, for `wasmclaw new
/// agent` to write beside a new project, so the project builds anywhere.
fn embed_sdk(root: &Path) {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let manifest = out_dir.join("sdk-Cargo.toml");
    std::fs::write(&manifest, standalone_sdk_manifest(root)).unwrap();
    let mut files = vec![("wasmclaw-sdk/Cargo.toml".to_string(), manifest)];
    for (dir, prefix) in [("guest-sdk/src", "wasmclaw-sdk/src"), ("wit", "wit")] {
        for path in files_under(&root.join(dir)) {
            let relative = path.strip_prefix(root.join(dir)).unwrap().to_string_lossy().replace('\\', "/");
            files.push((format!("{prefix}/{relative}"), path));
        }
    }
    let mut code = String::from(
        "/// The SDK and the contract, by path in a new project.\npub const SDK_FILES: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &files {
        code.push_str(&format!("    ({name:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    code.push_str("];\n");
    code.push_str(&format!(
        "/// The workspace's lock file: a new project starts from the versions the SDK was tested with.\n\
         pub const CARGO_LOCK: &str = include_str!({:?});\n",
        root.join("Cargo.lock").display().to_string()
    ));
    std::fs::write(out_dir.join("sdk_files.rs"), code).unwrap();
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The SDK's manifest with every `workspace = true` replaced by the
/// workspace's value, and no dev-dependencies (its tests are not copied).
fn standalone_sdk_manifest(root: &Path) -> String {
    let read = |path: &Path| -> toml::Table { std::fs::read_to_string(path).unwrap().parse().unwrap() };
    let workspace = read(&root.join("Cargo.toml"))["workspace"].as_table().unwrap().clone();
    let mut sdk = read(&root.join("guest-sdk/Cargo.toml"));
    sdk.remove("dev-dependencies");
    let inherited = |value: &toml::Value| value.get("workspace").and_then(toml::Value::as_bool) == Some(true);
    let package = sdk.get_mut("package").and_then(toml::Value::as_table_mut).unwrap();
    for (key, value) in package.iter_mut() {
        if inherited(value) {
            *value = workspace["package"][key.as_str()].clone();
        }
    }
    if let Some(deps) = sdk.get_mut("dependencies").and_then(toml::Value::as_table_mut) {
        for (name, value) in deps.iter_mut().filter(|(_, v)| inherited(v)) {
            let mut resolved = match workspace["dependencies"][name.as_str()].clone() {
                toml::Value::String(version) => toml::Table::from_iter([("version".to_string(), version.into())]),
                toml::Value::Table(table) => table,
                other => panic!("workspace dependency {name}: unexpected {other}"),
            };
            // Keys beside `workspace = true` add to the workspace's (features, optional).
            for (key, local) in value.as_table().unwrap().iter().filter(|(k, _)| *k != "workspace") {
                match (resolved.get_mut(key).and_then(toml::Value::as_array_mut), local.as_array()) {
                    (Some(features), Some(more)) => features.extend(more.iter().cloned()),
                    _ => drop(resolved.insert(key.clone(), local.clone())),
                }
            }
            *value = toml::Value::Table(resolved);
        }
    }
    format!(
        "# Written by `wasmclaw new agent`: the SDK this wasmclaw was built with.\n{}",
        toml::to_string(&sdk).unwrap()
    )
}
