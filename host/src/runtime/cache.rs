//! Compiled components on disk, so a restart does not recompile.
//!
//! Files are named `<component sha256>-<engine hash>.cwasm`, written by this
//! gateway only (temp file + fsync + rename). Deserializing runs native code,
//! so a file is trusted by its content, not its name: `index.json` records the
//! sha256 of every artifact this gateway wrote (and the engine hash), written
//! atomically with fsync; an artifact whose digest does not match its record
//! (truncated, zeroed, or another component's file copied over it) is a miss:
//! it is removed, logged and recompiled.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const INDEX: &str = "index.json";

/// What `index.json` holds.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Index {
    engine: String,
    /// Artifact file name → sha256 of its bytes, hex.
    artifacts: BTreeMap<String, String>,
}

/// The gateway's compile cache folder.
pub struct CompileCache {
    dir: PathBuf,
    engine_hash: String,
    index: Mutex<Index>,
}

impl CompileCache {
    /// A cache in `dir` (created on first write) for components of `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        // DefaultHasher has fixed keys: the same engine settings and wasmtime
        // build give the same name in every process.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());
        let index = std::fs::read(dir.join(INDEX))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Index>(&bytes).ok())
            .filter(|index| index.engine == engine_hash)
            .unwrap_or_else(|| Index { engine: engine_hash.clone(), artifacts: BTreeMap::new() });
        Self { dir, engine_hash, index: Mutex::new(index) }
    }

    fn name(&self, digest: &str) -> String {
        format!("{digest}-{}.cwasm", self.engine_hash)
    }

    /// The compiled component for `bytes` (by `compile` on a miss); `true`
    /// when it came from the cache.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
        compile: impl FnOnce(&[u8]) -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, bool)> {
        let name = self.name(digest);
        let path = self.dir.join(&name);
        if let Some(artifact) = self.verified(&name, &path) {
            // SAFETY: these bytes are exactly what this gateway serialized for
            // this component and engine: their sha256 matches the record the
            // gateway wrote when it stored them (see `store`).
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => self.discard(&name, &path, &format!("{e}")),
            }
        }
        let component = compile(bytes)?;
        if let Err(e) = self.store(&name, &path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compile cache");
        }
        Ok((component, false))
    }

    /// The artifact's bytes if its digest matches the index; anything else is a miss.
    fn verified(&self, name: &str, path: &Path) -> Option<Vec<u8>> {
        let expected = self.lock().artifacts.get(name).cloned();
        let bytes = std::fs::read(path).ok();
        match (expected, bytes) {
            (_, None) => None,
            (None, Some(_)) => {
                self.discard(name, path, "no record in the cache index");
                None
            }
            (Some(expected), Some(bytes)) if hex::encode(Sha256::digest(&bytes)) == expected => Some(bytes),
            (Some(_), Some(_)) => {
                self.discard(name, path, "its digest does not match the cache index");
                None
            }
        }
    }

    fn discard(&self, name: &str, path: &Path, why: &str) {
        tracing::warn!(path = %path.display(), why, "compile cache entry not trusted; recompiling");
        let _ = std::fs::remove_file(path);
        let mut index = self.lock();
        if index.artifacts.remove(name).is_some() {
            let _ = self.write_index(&index);
        }
    }

    fn store(&self, name: &str, path: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let serialized = component.serialize()?;
        write_atomically(&self.dir, path, &serialized)?;
        let mut index = self.lock();
        index.artifacts.insert(name.to_string(), hex::encode(Sha256::digest(&serialized)));
        self.write_index(&index)
    }

    fn write_index(&self, index: &Index) -> anyhow::Result<()> {
        Ok(write_atomically(&self.dir, &self.dir.join(INDEX), &serde_json::to_vec_pretty(index)?)?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Temp file, fsync, rename, fsync the folder: after a crash the file is
/// either the old one or the whole new one.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
