//! The on-disk copy of the cache (SPEC 5.8): one JSON file in the state directory,
//! replaced atomically (write a temporary file, fsync, rename, fsync the directory),
//! so a crash leaves either the old or the new copy, never a torn one.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::CachedPolicy;

const FILE_NAME: &str = "policies.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a policy store this version can read: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// The policy store in one directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct File1 {
    version: u32,
    policies: Vec<Persisted>,
}

/// [`File1`], borrowed, for writing.
#[derive(Serialize)]
struct File1Ref<'a> {
    version: u32,
    policies: Vec<PersistedRef<'a>>,
}

#[derive(Serialize)]
struct PersistedRef<'a> {
    domain: &'a str,
    #[serde(flatten)]
    policy: &'a CachedPolicy,
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    domain: String,
    #[serde(flatten)]
    policy: CachedPolicy,
}

impl Store {
    /// Use `dir`, creating it if needed, and check now that it is writable so a
    /// misconfiguration shows at start-up, not at the first save.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let io_err = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let probe = dir.join(".write-test");
        File::create(&probe).map_err(io_err)?;
        let _ = fs::remove_file(&probe);
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Everything saved; an absent file is an empty store.
    pub fn load(&self) -> Result<Vec<(String, CachedPolicy)>, StoreError> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let file: File1 = serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if file.version != FORMAT_VERSION {
            return Err(StoreError::Corrupt {
                path,
                message: format!("format version {}", file.version),
            });
        }
        Ok(file
            .policies
            .into_iter()
            .map(|p| (p.domain, p.policy))
            .collect())
    }

    /// Replace the saved copy with `policies`, atomically.
    pub fn save(&self, policies: &[(String, Arc<CachedPolicy>)]) -> Result<(), StoreError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let io_err = |source| StoreError::Io {
            path: tmp.clone(),
            source,
        };
        // Written from references: a save must not copy the whole cache again.
        let file = File1Ref {
            version: FORMAT_VERSION,
            policies: policies
                .iter()
                .map(|(d, p)| PersistedRef {
                    domain: d,
                    policy: p,
                })
                .collect(),
        };
        let mut out = io::BufWriter::new(File::create(&tmp).map_err(io_err)?);
        serde_json::to_writer(&mut out, &file).map_err(|e| io_err(e.into()))?;
        let out = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        out.sync_all().map_err(io_err)?;
        drop(out);
        fs::rename(&tmp, &path).map_err(io_err)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
        Ok(())
    }
}
