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
    for dir in ["wit", "guest-sdk", "plugins", "tests/fixtures", "Cargo.lock"] {
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
}
