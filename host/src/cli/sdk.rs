//! `wasmclaw sdk`: the Rust SDK this binary was built with (and the contract
//! it builds against), installed once per version under
//! `<stateDir>/sdk/<version>/` (`build.rs` embeds the files). Rust projects
//! name it as a path dependency instead of carrying a copy, so an SDK fix
//! reaches an existing agent with `wasmclaw sdk update`: the project then
//! names the SDK of the wasmclaw that runs the command.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub(super) mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// The folder of this binary's SDK under `state_dir`: its crate is `wasmclaw-sdk/` in it.
pub fn root(state_dir: &Path) -> PathBuf {
    state_dir.join("sdk").join(env!("CARGO_PKG_VERSION"))
}

/// Write this binary's SDK under `state_dir` (files that already hold the same
/// text are left alone, so projects do not rebuild it); returns the crate's folder.
pub fn install(state_dir: &Path) -> anyhow::Result<PathBuf> {
    let root = root(state_dir);
    for (path, text) in embedded::SDK_FILES {
        let path = root.join(path);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == *text) {
            continue;
        }
        std::fs::create_dir_all(path.parent().expect("a file in the SDK"))
            .and_then(|()| std::fs::write(&path, text))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(root.join("wasmclaw-sdk"))
}

/// `wasmclaw sdk install`: install and say where.
pub fn install_command(state_dir: &Path) -> anyhow::Result<()> {
    let sdk = install(state_dir)?;
    println!("wasmclaw-sdk {} is in {}", env!("CARGO_PKG_VERSION"), sdk.display());
    Ok(())
}

/// `wasmclaw sdk update`: install this binary's SDK and point the project in
/// `project` at it (its `wasmclaw-sdk` path dependencies, in `Cargo.toml`).
pub fn update(state_dir: &Path, project: &Path) -> anyhow::Result<()> {
    let manifest_path = project.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!("cannot read {} (run this in a Rust agent project, or pass --dir)", manifest_path.display())
    })?;
    let sdk = install(state_dir)?;
    let (updated, old) = repoint(&manifest, &sdk).with_context(|| {
        format!("{} has no `wasmclaw-sdk = {{ path = \"…\" }}` dependency to update", manifest_path.display())
    })?;
    std::fs::write(&manifest_path, updated).with_context(|| format!("cannot write {}", manifest_path.display()))?;
    println!("wasmclaw-sdk: {old} -> {} ({})", sdk.display(), env!("CARGO_PKG_VERSION"));
    if project.join(&old) == project.join("wasmclaw-sdk") {
        println!("the copy in {} is no longer used: delete it", project.join("wasmclaw-sdk").display());
    }
    Ok(())
}

/// A `Cargo.toml` path value (TOML basic string).
pub fn toml_path(path: &Path) -> String {
    let text = path.display().to_string();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `manifest` with the path of every `wasmclaw-sdk = { path = "…" … }` line
/// set to `sdk`, and the path it named before; `None` if there is no such line.
fn repoint(manifest: &str, sdk: &Path) -> Option<(String, String)> {
    let mut old = None;
    let mut lines: Vec<String> = Vec::new();
    for line in manifest.lines() {
        let dependency =
            line.trim_start().strip_prefix("wasmclaw-sdk").is_some_and(|r| r.trim_start().starts_with('='));
        let value = line.find("path = \"").map(|at| at + "path = \"".len());
        let end = value.and_then(|start| line[start..].find('"').map(|len| start + len));
        match (dependency, value, end) {
            (true, Some(start), Some(end)) => {
                old.get_or_insert_with(|| line[start..end].to_string());
                lines.push(format!("{}{}{}", &line[..start - 1], toml_path(sdk), &line[end + 1..]));
            }
            _ => lines.push(line.to_string()),
        }
    }
    let mut text = lines.join("\n");
    if manifest.ends_with('\n') {
        text.push('\n');
    }
    old.map(|old| (text, old))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_repoints_every_sdk_dependency_and_nothing_else() {
        let manifest = "[dependencies]\nwasmclaw-sdk = { path = \"wasmclaw-sdk\" }\nserde = \"1\"\n\n\
                        [dev-dependencies]\nwasmclaw-sdk = { path = \"wasmclaw-sdk\", features = [\"testing\"] }\n";
        let (updated, old) = repoint(manifest, Path::new("/home/a/.wasmclaw/sdk/9.9.9/wasmclaw-sdk")).unwrap();
        assert_eq!(old, "wasmclaw-sdk");
        assert_eq!(
            updated,
            "[dependencies]\nwasmclaw-sdk = { path = \"/home/a/.wasmclaw/sdk/9.9.9/wasmclaw-sdk\" }\nserde = \"1\"\n\n\
             [dev-dependencies]\nwasmclaw-sdk = { path = \"/home/a/.wasmclaw/sdk/9.9.9/wasmclaw-sdk\", features = [\"testing\"] }\n"
        );
        assert!(repoint("[dependencies]\nwasmclaw-sdk-extra = { path = \"x\" }\n", Path::new("/s")).is_none());
        assert_eq!(toml_path(Path::new(r#"C:\a "b""#)), r#""C:\\a \"b\"""#);
    }

    #[test]
    fn install_writes_the_sdk_once_per_version_and_keeps_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = install(dir.path()).unwrap();
        assert_eq!(sdk, dir.path().join("sdk").join(env!("CARGO_PKG_VERSION")).join("wasmclaw-sdk"));
        let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"wasmclaw-sdk\"") && !manifest.contains("workspace"), "{manifest}");
        assert!(sdk.join("../wit/v0.2/agent.wit").is_file(), "the contract beside the crate");
        let lib = sdk.join("src/lib.rs");
        let written = std::fs::metadata(&lib).unwrap().modified().unwrap();
        std::fs::write(sdk.join("src/testing.rs"), "tampered").unwrap();
        install(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&lib).unwrap().modified().unwrap(), written, "unchanged: not rewritten");
        assert_ne!(std::fs::read_to_string(sdk.join("src/testing.rs")).unwrap(), "tampered", "changed: restored");
    }
}
