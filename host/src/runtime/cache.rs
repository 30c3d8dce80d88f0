//! Compiled components on disk, so a restart does not recompile.
//!
//! Files are named `<component sha256>-<engine hash>.cwasm`, written by this
//! gateway only (temp file + rename), and read back only from this folder by
//! that name: a file a user hands in is never deserialized.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The gateway's compile cache folder.
pub struct CompileCache {
    dir: PathBuf,
    engine_hash: String,
}

impl CompileCache {
    /// A cache in `dir` (created on first write) for components of `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        // DefaultHasher has fixed keys: the same engine settings and wasmtime
        // build give the same name in every process.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self { dir, engine_hash: format!("{:016x}", hasher.finish()) }
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_hash))
    }

    /// The compiled component for `bytes`; `true` when it came from the cache.
    pub fn load_or_compile(&self, engine: &Engine, digest: &str, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let path = self.path(digest);
        if path.is_file() {
            // SAFETY: only files this gateway serialized land in this folder
            // under this name (see `store`), and the name pins both the exact
            // component bytes and the engine configuration.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unusable compile cache entry; recompiling");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compile cache");
        }
        Ok((component, false))
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let serialized = component.serialize()?;
        let tmp = self.dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, serialized)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(())
    }
}
