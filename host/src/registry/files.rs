//! Component bytes as files named by their digest, for the SQLite registry.
//! A file is trusted only after its content matched its name: a damaged one
//! is never served, and writing the right bytes again repairs it.

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

    /// Keep `bytes` under `digest`: skipped only when the file already holds
    /// exactly them; a damaged file is rewritten (temp file, fsync, rename)
    /// and read back, so an install never succeeds over a store that still
    /// holds the wrong bytes.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let path = self.path(digest)?;
        if super::digest(bytes) != digest {
            return Err(RegistryError::Backend(format!("the bytes given for component {digest} do not match it")));
        }
        let damaged = match std::fs::read(&path) {
            Ok(kept) if super::digest(&kept) == digest => return Ok(()),
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            // Unreadable: rewriting it is the repair (or fails below with the reason).
            Err(_) => true,
        };
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
        written.map_err(fail)?;
        if std::fs::read(&path).map_err(fail).map(|kept| super::digest(&kept) != digest)? {
            return Err(RegistryError::Backend(format!(
                "component file {} still does not match its digest after being rewritten; check the disk",
                path.display()
            )));
        }
        if damaged {
            tracing::warn!(path = %path.display(), "damaged component file repaired with the bytes just installed");
        }
        Ok(())
    }

    /// The bytes, or `None` when there is no such file. A file whose content
    /// does not match its name is an error saying which file and how to
    /// repair it (it is never served).
    pub fn get(&self, digest: &str) -> Result<Option<Arc<[u8]>>, RegistryError> {
        let path = self.path(digest)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RegistryError::Backend(format!("cannot read {}: {e}", path.display()))),
        };
        if super::digest(&bytes) != digest {
            return Err(RegistryError::Backend(format!(
                "component file {} is damaged (its content does not match its digest); install the agent's \
                 component again (e.g. `PUT /admin/agents/<id>` with the same file) to repair it",
                path.display()
            )));
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
        let err = blobs.get(&d).expect_err("a changed file is not served").to_string();
        assert!(err.contains(&format!("{d}.wasm")) && err.contains("damaged") && err.contains("again"), "{err}");
        assert!(blobs.put("../x", b"x").is_err());
        assert!(blobs.put(&d, b"other").is_err(), "bytes that do not match the digest are refused");
    }

    #[test]
    fn writing_the_bytes_again_repairs_a_damaged_file_of_the_same_length() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path().join("components"));
        let bytes = b"component".to_vec();
        let d = digest(&bytes);
        blobs.put(&d, &bytes).unwrap();
        let file = dir.path().join("components").join(format!("{d}.wasm"));
        let mut flipped = bytes.clone();
        flipped[3] ^= 0x01;
        std::fs::write(&file, &flipped).unwrap();
        blobs.put(&d, &bytes).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "the file holds the right bytes again");
        assert_eq!(&*blobs.get(&d).unwrap().unwrap(), &bytes[..]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("components")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn a_store_that_cannot_be_repaired_fails_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let components = dir.path().join("components");
        let blobs = Blobs::new(components.clone());
        let bytes = b"component".to_vec();
        let d = digest(&bytes);
        // A folder where the file should be: it can be neither read as the
        // component nor replaced by a rename.
        std::fs::create_dir_all(components.join(format!("{d}.wasm")).join("x")).unwrap();
        let err = blobs.put(&d, &bytes).expect_err("the damaged entry cannot be replaced").to_string();
        assert!(err.contains("cannot keep component"), "{err}");
    }
}
