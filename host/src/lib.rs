//! wasmclaw: an OpenClaw-compatible gateway that runs every agent as a
//! WebAssembly component. See `docs/ARCHITECTURE.md` for the map.

pub mod auth;
pub mod chat;
pub mod cli;
pub mod config;
pub mod db;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod providers;
pub mod registry;
pub mod rollout;
pub mod runs;
pub mod runtime;
pub mod sessions;
pub mod tape;
pub mod telemetry;
pub mod usage;
pub mod ws;

/// The top-level modules depend on each other without cycles, so each can be
/// read, tested and replaced from the bottom up (`chat` at the bottom, the
/// doors at the top). Checked on the source text: every `crate::<module>`.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn sources(path: &Path, out: &mut String) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                sources(&entry.unwrap().path(), out);
            }
        } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }

    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let modules: Vec<String> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir() || p.file_stem().is_some_and(|s| s != "lib" && s != "main"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut graph = BTreeMap::new();
        for module in &modules {
            let mut text = String::new();
            sources(&src.join(module), &mut text);
            sources(&src.join(format!("{module}.rs")), &mut text);
            let uses = modules
                .iter()
                .filter(|other| *other != module && text.contains(&format!("crate::{other}")))
                .cloned()
                .collect();
            graph.insert(module.clone(), uses);
        }
        graph
    }

    #[test]
    fn top_level_modules_form_no_cycle() {
        let graph = graph();
        assert!(graph.len() > 5 && graph["runs"].contains("runtime"), "the scan must see the modules: {graph:?}");
        // Depth-first search for a back edge, reporting the cycle it closes.
        fn visit<'g>(
            node: &'g str,
            graph: &'g BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'g str>,
            done: &mut BTreeSet<&'g str>,
        ) {
            if let Some(start) = path.iter().position(|n| *n == node) {
                panic!("import cycle: {} -> {node}", path[start..].join(" -> "));
            }
            if !done.insert(node) {
                return;
            }
            path.push(node);
            for next in &graph[node] {
                visit(next, graph, path, done);
            }
            path.pop();
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            visit(node, &graph, &mut Vec::new(), &mut done);
        }
    }

    #[test]
    fn chat_is_the_bottom_layer() {
        assert!(graph()["chat"].is_empty(), "chat must depend on no other module");
    }
}
