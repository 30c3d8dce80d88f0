//! The components are built by the `wasmclaw` crate's build script; find them
//! in the shared guest target dir rather than building them a second time.
fn main() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests/wasm32-wasip2/guest");
    for (var, file) in [
        ("WASMCLAW_BENCH_FAULTS", "wasmclaw_fixture_faults.wasm"),
        ("WASMCLAW_BENCH_ECHO", "wasmclaw_plugin_echo.wasm"),
    ] {
        println!("cargo:rustc-env={var}={}", dir.join(file).display());
    }
    println!("cargo:rerun-if-changed={}", dir.display());
}
