//! `wasmclaw new agent`: a project that builds where it is created. The
//! templates are embedded in the binary (`host/templates/`). A Rust project
//! names the SDK this binary installs under `<stateDir>/sdk/<version>/`
//! (`wasmclaw sdk`) as a path dependency and starts from the lock file the
//! SDK was tested with, so it depends neither on this repository nor on a
//! registry having the SDK; Python and JavaScript projects get the contract.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::sdk::{self, embedded};

/// Languages a project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the wasmclaw SDK (cargo, wasm32-wasip2).
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
}

/// A template file: its path in the project and its text with `{{…}}` placeholders.
type Template = (&'static str, &'static str);

const RUST: &[Template] = &[
    ("Cargo.toml", include_str!("../../templates/rust/Cargo.toml")),
    // The toolchain and wasm target `cargo install` of this wasmclaw used, so a
    // default toolchain without `wasm32-wasip2` does not fail the first build.
    ("rust-toolchain.toml", include_str!("../../../rust-toolchain.toml")),
    (".cargo/config.toml", include_str!("../../templates/rust/cargo-config.toml")),
    (".gitignore", include_str!("../../templates/rust/gitignore")),
    ("src/lib.rs", include_str!("../../templates/rust/lib.rs")),
    ("gateway.json5", include_str!("../../templates/rust/gateway.json5")),
    ("README.md", include_str!("../../templates/rust/README.md")),
];

const PYTHON: &[Template] = &[
    ("app.py", include_str!("../../templates/python/app.py")),
    ("fetch.py", include_str!("../../templates/python/fetch.py")),
    ("mcp.py", include_str!("../../templates/python/mcp.py")),
    ("wit/world.wit", include_str!("../../templates/python/world.wit")),
    ("test_app.py", include_str!("../../templates/python/test_app.py")),
    ("wasmclaw_testing.py", include_str!("../../templates/python/wasmclaw_testing.py")),
    ("pyproject.toml", include_str!("../../templates/python/pyproject.toml")),
    (".gitignore", include_str!("../../templates/python/gitignore")),
    ("gateway.json5", include_str!("../../templates/python/gateway.json5")),
    ("README.md", include_str!("../../templates/python/README.md")),
];

const JS: &[Template] = &[
    ("agent.js", include_str!("../../templates/js/agent.js")),
    ("logic.js", include_str!("../../templates/js/logic.js")),
    ("mcp.js", include_str!("../../templates/js/mcp.js")),
    ("logic.test.js", include_str!("../../templates/js/logic.test.js")),
    ("wasmclaw-testing.js", include_str!("../../templates/js/wasmclaw-testing.js")),
    ("wit/world.wit", include_str!("../../templates/js/world.wit")),
    ("package.json", include_str!("../../templates/js/package.json")),
    (".gitignore", include_str!("../../templates/js/gitignore")),
    ("gateway.json5", include_str!("../../templates/js/gateway.json5")),
    ("README.md", include_str!("../../templates/js/README.md")),
];

/// The standard WASI 0.2 interfaces a world that imports `wasi:http` needs,
/// by path in a Python or JavaScript project (the versions the gateway serves).
const WASI_DEPS: &[Template] = &[
    ("wit/deps/cli/cli.wit", include_str!("../../../examples/python-fetch/wit/deps/cli/cli.wit")),
    ("wit/deps/clocks/clocks.wit", include_str!("../../../examples/python-fetch/wit/deps/clocks/clocks.wit")),
    (
        "wit/deps/filesystem/filesystem.wit",
        include_str!("../../../examples/python-fetch/wit/deps/filesystem/filesystem.wit"),
    ),
    ("wit/deps/http/http.wit", include_str!("../../../examples/python-fetch/wit/deps/http/http.wit")),
    ("wit/deps/io/io.wit", include_str!("../../../examples/python-fetch/wit/deps/io/io.wit")),
    ("wit/deps/random/random.wit", include_str!("../../../examples/python-fetch/wit/deps/random/random.wit")),
    ("wit/deps/sockets/sockets.wit", include_str!("../../../examples/python-fetch/wit/deps/sockets/sockets.wit")),
];

/// Write a new agent project `name` in `dir` (default `./name`) and say what to do next.
pub fn agent(name: &str, lang: Lang, dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    check_name(name)?;
    let sdk = match lang {
        Lang::Rust => sdk::install(&crate::config::Config::default().state_dir())?,
        Lang::Python | Lang::Js => PathBuf::new(),
    };
    let files = project(name, lang, &sdk)?;
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        anyhow::bail!("{} already exists and is not empty", dir.display());
    }
    for (path, text) in &files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the project"))
            .and_then(|()| std::fs::write(&path, text))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let cd = dir.display();
    let next = match lang {
        Lang::Rust => format!(
            "  cd {cd}\n  cargo test\n  wasmclaw dev   # builds, serves {}, rebuilds on every save",
            component(name, lang)
        ),
        Lang::Python | Lang::Js => format!("  cd {cd}   # then follow README.md"),
    };
    println!("created {lang:?} agent {name:?} in {cd}\nnext:\n{next}");
    Ok(())
}

/// The files of project `name`: path in the project → contents. A Rust
/// project names the SDK crate in `sdk` (see [`sdk::install`]).
pub fn project(name: &str, lang: Lang, sdk: &Path) -> anyhow::Result<Vec<(String, String)>> {
    check_name(name)?;
    let (templates, with_sdk) = match lang {
        Lang::Rust => (RUST, true),
        Lang::Python => (PYTHON, false),
        Lang::Js => (JS, false),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{type_name}}", &type_name(name))
            .replace("{{component}}", &component(name, lang))
            .replace("{{wasmclaw_version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{sdk_path}}", &sdk::toml_path(sdk))
    };
    let mut files: Vec<(String, String)> =
        templates.iter().map(|(path, text)| (path.to_string(), fill(text))).collect();
    if with_sdk {
        // The dependency versions the SDK was tested with: the project builds offline.
        files.push(("Cargo.lock".into(), embedded::CARGO_LOCK.into()));
        return Ok(files);
    }
    // Python and JavaScript: the project's world (`wit/world.wit`) includes
    // contract 0.2 from `wit/deps`; Python's imports `wasi:http` too (the
    // engine componentize-js embeds brings its own).
    let contract = embedded::SDK_FILES.iter().find(|(path, _)| *path == "wit/v0.2/agent.wit");
    let (_, contract) = contract.expect("build.rs embeds contract 0.2");
    files.push(("wit/deps/agent/agent.wit".into(), contract.to_string()));
    if lang == Lang::Python {
        files.extend(WASI_DEPS.iter().map(|(path, text)| (path.to_string(), text.to_string())));
    }
    Ok(files)
}

/// Where the project's build puts the component, relative to the project.
fn component(name: &str, lang: Lang) -> String {
    match lang {
        Lang::Rust => format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")),
        Lang::Python | Lang::Js => format!("{name}.wasm"),
    }
}

/// A name that is an agent id, a package name and an identifier once camel-cased.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    anyhow::ensure!(
        valid,
        "{name:?} is not a usable agent name: start with a-z, then a-z, 0-9, '-' or '_' (at most 64 characters)"
    );
    Ok(())
}

/// `my-agent` → `MyAgent`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| part[..1].to_ascii_uppercase() + &part[1..])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_ids_types_and_component_paths() {
        assert_eq!(type_name("my-agent_2"), "MyAgent2");
        assert_eq!(component("my-agent", Lang::Rust), "target/wasm32-wasip2/release/my_agent.wasm");
        assert_eq!(component("my-agent", Lang::Python), "my-agent.wasm");
        for bad in ["", "1abc", "Upper", "has space", "dot.ted", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(crate::chat::AgentId::parse("my-agent_2").is_some());
    }

    #[test]
    fn a_rust_project_names_the_installed_sdk_instead_of_a_copy() {
        let sdk = Path::new("/home/a/.wasmclaw/sdk/1.2.3/wasmclaw-sdk");
        let files = project("shout", Lang::Rust, sdk).unwrap();
        let file = |name: &str| &files.iter().find(|(p, _)| p == name).unwrap_or_else(|| panic!("no {name}")).1;
        assert!(file("src/lib.rs").contains("struct Shout;"));
        assert!(file("gateway.json5").contains("target/wasm32-wasip2/release/shout.wasm"));
        assert!(!files.iter().any(|(_, text)| text.contains("{{")), "every placeholder is filled");
        let manifest = file("Cargo.toml");
        let named = manifest.matches(r#"wasmclaw-sdk = { path = "/home/a/.wasmclaw/sdk/1.2.3/wasmclaw-sdk""#).count();
        assert_eq!(named, 2, "the dependency and the dev-dependency (with `testing`): {manifest}");
        assert!(files.iter().all(|(p, _)| !p.starts_with("wasmclaw-sdk/") && !p.starts_with("wit/")), "no copy");
        assert!(file("Cargo.lock").contains("name = \"wit-bindgen\""));
        // Outside this repository the author's default toolchain may lack the
        // wasm target; the project names the one `cargo install` already used.
        assert!(file("rust-toolchain.toml").contains(r#"targets = ["wasm32-wasip2"]"#));
    }

    #[test]
    fn the_embedded_sdk_builds_outside_this_workspace() {
        let file =
            |name: &str| embedded::SDK_FILES.iter().find(|(p, _)| *p == name).unwrap_or_else(|| panic!("{name}")).1;
        // No inheritance, no self-dependency.
        let manifest = file("wasmclaw-sdk/Cargo.toml");
        assert!(!manifest.contains("workspace"), "{manifest}");
        assert!(!manifest.contains("dev-dependencies"), "{manifest}");
        assert!(manifest.contains("wit-bindgen"), "{manifest}");
        assert!(file("wasmclaw-sdk/src/lib.rs").contains("path: \"../wit/v0.2\""));
        assert!(file("wit/v0.2/agent.wit").contains("package wasmclaw:agent@0.2.2"));
        assert!(file("wasmclaw-sdk/src/testing.rs").contains("pub struct TestHost"));
    }

    #[test]
    fn other_languages_get_a_world_on_contract_0_2_with_its_deps_but_no_rust() {
        for lang in [Lang::Python, Lang::Js] {
            let files = project("hello", lang, Path::new("")).unwrap();
            let file = |name: &str| &files.iter().find(|(p, _)| p == name).unwrap_or_else(|| panic!("no {name}")).1;
            assert!(file("wit/world.wit").contains("include wasmclaw:agent/agent@0.2.2;"));
            assert!(file("wit/deps/agent/agent.wit").contains("package wasmclaw:agent@0.2.2;"));
            // Only the world and its deps: a second package beside world.wit would not parse.
            assert!(files.iter().filter(|(p, _)| p.starts_with("wit/") && !p.starts_with("wit/deps/")).count() == 1);
            for dep in ["cli", "clocks", "filesystem", "http", "io", "random", "sockets"] {
                let path = format!("wit/deps/{dep}/{dep}.wit");
                match lang {
                    Lang::Python => assert!(file(&path).contains(&format!("package wasi:{dep}@0.2.12;"))),
                    _ => assert!(files.iter().all(|(p, _)| *p != path), "{path}"),
                }
            }
            assert!(files.iter().all(|(p, _)| !p.starts_with("wasmclaw-sdk/") && p != "Cargo.lock"));
            assert!(file("gateway.json5").contains("hello.wasm"));
            assert!(!files.iter().any(|(_, text)| text.contains("{{")), "every placeholder is filled");
        }
    }
}
