//! Component bytes as files named by their digest, for the SQLite registry.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::RegistryError;

/// A folder of `<sha256>.wasm` files.
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// Blobs under `dir`, created on first write.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, digest: &str) -> Result<PathBuf, RegistryError> {
        // The digest names a file: only hex, so it can never leave the folder.
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RegistryError::Backend(format!("{digest:?} is not a sha256 digest")));
        }
        Ok(self.dir.join(format!("{digest}.wasm")))
    }

    /// Write atomically (temp file, fsync, rename) unless already present.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let path = self.path(digest)?;
        if path.metadata().is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(());
        }
        let fail =
            |e: std::io::Error| RegistryError::Backend(format!("cannot keep component in {}: {e}", self.dir.display()));
        std::fs::create_dir_all(&self.dir).map_err(fail)?;
        let tmp = self.dir.join(format!(".{digest}.{}.tmp", uuid::Uuid::new_v4()));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(fail)
    }

    /// The bytes, or `None` when missing or not matching their name.
    pub fn get(&self, digest: &str) -> Result<Option<Arc<[u8]>>, RegistryError> {
        let path = self.path(digest)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RegistryError::Backend(format!("cannot read {}: {e}", path.display()))),
        };
        if super::digest(&bytes) != digest {
            tracing::warn!(path = %path.display(), "kept component does not match its digest; ignored");
            return Ok(None);
        }
        Ok(Some(bytes.into()))
    }
}

/// Make a rename durable: the directory entry must reach the disk too.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::digest;

    #[test]
    fn blobs_round_trip_and_refuse_tampering_and_odd_names() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path().join("components"));
        let bytes = b"component".to_vec();
        let d = digest(&bytes);
        assert!(blobs.get(&d).unwrap().is_none());
        blobs.put(&d, &bytes).unwrap();
        assert_eq!(&*blobs.get(&d).unwrap().unwrap(), &bytes[..]);
        std::fs::write(dir.path().join("components").join(format!("{d}.wasm")), b"componenT").unwrap();
        assert!(blobs.get(&d).unwrap().is_none(), "a changed file is not served");
        assert!(blobs.put("../x", b"x").is_err());
    }
}
