//! `wasmclaw sdk install` / `update`: a Rust project names the SDK installed
//! once per version under the state folder instead of carrying a copy, so an
//! SDK fix reaches an existing project with one command.

use crate::author::{author_cargo, new_project};
use crate::support::*;

#[test]
fn a_new_rust_project_names_the_installed_sdk_and_update_moves_an_old_project_onto_it() {
    let (tmp, dir) = new_project("noted", "rust");
    let sdk = tmp.path().join("sdk").join(env!("CARGO_PKG_VERSION")).join("wasmclaw-sdk");
    assert!(sdk.join("Cargo.toml").is_file() && sdk.join("../wit/v0.2/agent.wit").is_file());
    assert!(!dir.join("wasmclaw-sdk").exists(), "no copy in the project");
    let manifest_path = dir.join("Cargo.toml");
    let named = format!("wasmclaw-sdk = {{ path = \"{}\"", sdk.display());
    assert_eq!(std::fs::read_to_string(&manifest_path).unwrap().matches(&named).count(), 2);

    // A project of an earlier wasmclaw, with its own copy of the SDK.
    let old = std::fs::read_to_string(&manifest_path).unwrap().replace(&sdk.display().to_string(), "wasmclaw-sdk");
    std::fs::write(&manifest_path, old).unwrap();
    std::fs::create_dir(dir.join("wasmclaw-sdk")).unwrap();
    let out = cli(tmp.path()).args(["sdk", "update", "--dir"]).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("wasmclaw-sdk: wasmclaw-sdk -> {}", sdk.display())), "{stdout}");
    assert!(stdout.contains("is no longer used: delete it"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&manifest_path).unwrap().matches(&named).count(), 2);
    // Cargo resolves it offline, from the lock file the project started with.
    let out = author_cargo(&dir, &["pkgid", "wasmclaw-sdk", "--offline"]);
    let id = String::from_utf8_lossy(&out.stdout);
    assert_eq!(id.trim(), format!("path+file://{}#{}", sdk.display(), env!("CARGO_PKG_VERSION")));

    // `install` says where; outside a project `update` says what it needs.
    let out = cli(tmp.path()).args(["sdk", "install"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&sdk.display().to_string()));
    let out = cli(tmp.path()).args(["sdk", "update"]).current_dir(tmp.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run this in a Rust agent project, or pass --dir"), "{stderr}");
}
