//! The on-disk copy of the cache (SPEC 5.8): one JSON file in the state directory,
//! replaced atomically (write a temporary file, fsync, rename, fsync the directory),
//! so a crash leaves either the old or the new copy, never a torn one.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::CachedPolicy;

pub mod salvage;

const FILE_NAME: &str = "policies.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a policy store this version can read: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// SPEC 5.8: the file exists but cannot be read (permissions, a directory in its
    /// place, an I/O error): never started without, nor saved over.
    #[error("{path} cannot be read; it was left as it is. Make it a file readable and writable by the user mtastsd runs as, or move it away to start with an empty cache")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What [`Store::save`] writes: the policies, their `fetched` in the cache's
/// process seconds, and the wall time minus the process time when the snapshot was
/// taken (SPEC 5.9: the file holds wall times).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub policies: Vec<(String, Arc<CachedPolicy>)>,
    pub wall_offset: i64,
}

impl Snapshot {
    /// Policies whose `fetched` is already wall time.
    pub fn wall(policies: Vec<(String, Arc<CachedPolicy>)>) -> Snapshot {
        Snapshot {
            policies,
            wall_offset: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// The policy store in one directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

/// The file, `{"version": 1, "policies": [...]}`, borrowed, for writing (read back
/// entry by entry by [`salvage`]).
#[derive(Serialize)]
struct File1Ref<'a> {
    version: u32,
    policies: Vec<PersistedRef<'a>>,
}

/// The fields of [`Persisted`], borrowed, with `fetched` in wall time.
#[derive(Serialize)]
struct PersistedRef<'a> {
    domain: &'a str,
    policy: &'a crate::mta_sts::Policy,
    id: &'a str,
    fetched: u64,
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

    /// Everything saved, `fetched` in wall time; an absent file is an empty store. A damaged file (torn,
    /// edited, an entry that fails validation such as SPEC 4.4's mx patterns) gives
    /// up only what is damaged: the rest is loaded, the file is copied to
    /// `policies.json.corrupt` as evidence, and a warning says how much was lost.
    /// A damaged file with nothing intact, or another format version, is
    /// [`StoreError::Corrupt`]; a file that cannot be read is [`StoreError::Unreadable`].
    pub fn load(&self) -> Result<Vec<(String, CachedPolicy)>, StoreError> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Unreadable { path, source }),
        };
        let file = salvage::salvage::<Persisted>(&text);
        if file.damaged && file.entries.is_empty() {
            return Err(StoreError::Corrupt {
                path,
                message: "no intact policy in it".into(),
            });
        }
        match file.version {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            // Another version's entries may mean something else: read none of them.
            Some(v) => {
                return Err(StoreError::Corrupt {
                    path,
                    message: format!("format version {v}"),
                })
            }
            // Torn before the version (or edited away), entries intact: ours.
            None => {}
        }
        if file.damaged {
            let evidence = path.with_extension("json.corrupt");
            let _ = fs::copy(&path, &evidence);
            log::warn!(
                "{}: damaged; loaded the {} policies that are intact, skipped {} damaged entries (copy kept as {})",
                path.display(),
                file.entries.len(),
                file.skipped,
                evidence.display()
            );
        }
        Ok(file
            .entries
            .into_iter()
            .map(|mut p| {
                // SPEC 4.5 holds for what comes back from disk too.
                let max_age = &mut p.policy.policy.max_age;
                *max_age = (*max_age).min(crate::mta_sts::MAX_AGE_LIMIT);
                (p.domain, p.policy)
            })
            .collect())
    }

    /// Replace the saved copy with `snapshot`'s policies, atomically.
    pub fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let io_err = |source| StoreError::Io {
            path: tmp.clone(),
            source,
        };
        // Written from references: a save must not copy the whole cache again.
        let file = File1Ref {
            version: FORMAT_VERSION,
            policies: snapshot
                .policies
                .iter()
                .map(|(d, p)| PersistedRef {
                    domain: d,
                    policy: &p.policy,
                    id: &p.id,
                    fetched: p.fetched.saturating_add_signed(snapshot.wall_offset),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::policy::parse_policy;

    /// STYLE: a `Display` never repeats its source; whoever prints the error prints
    /// the chain, once.
    #[test]
    fn errors_name_their_source_once() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the state directory should be.
        let file = dir.path().join("state");
        std::fs::write(&file, "").unwrap();
        let Err(open) = Store::open(&file) else {
            panic!("not a directory")
        };
        // A directory where the state file should be.
        std::fs::create_dir(file.with_file_name("other")).unwrap();
        let store = Store::open(&dir.path().join("other")).unwrap();
        std::fs::create_dir(store.path()).unwrap();
        let Err(load) = store.load() else {
            panic!("a directory is not readable as a file")
        };
        for e in [&open, &load] {
            let source = std::error::Error::source(e).expect("keeps its source");
            let text = e.to_string();
            assert!(!text.contains(&source.to_string()), "{text}");
        }
        assert!(matches!(load, StoreError::Unreadable { .. }), "{load}");
        assert!(load.to_string().contains("move it away"), "{load}");
    }

    fn policies(n: usize) -> Vec<(String, Arc<CachedPolicy>)> {
        (0..n)
            .map(|i| {
                let body = format!(
                    "version: STSv1\nmode: enforce\nmx: mx{i}.example.net\nmax_age: 86400\n"
                );
                let p = parse_policy(body.as_bytes()).unwrap();
                (
                    format!("d{i}.example"),
                    Arc::new(CachedPolicy::new(p, format!("id{i}"), 1_800_000_000)),
                )
            })
            .collect()
    }

    /// SPEC 5.8: a truncated store loads every entry before the cut, whatever the
    /// cut, and never fails as long as one entry is whole (a restart must not
    /// reopen the downgrade window for the domains the file still holds).
    #[test]
    fn truncated_store_loads_what_is_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let saved = policies(5);
        store.save(&Snapshot::wall(saved.clone())).unwrap();
        let whole = fs::read(store.path()).unwrap();
        let all = store.load().unwrap();
        assert_eq!(all.len(), 5);
        assert!(!dir.path().join("policies.json.corrupt").exists());
        for cut in (0..whole.len()).step_by(7) {
            fs::write(store.path(), &whole[..cut]).unwrap();
            match store.load() {
                Ok(got) => {
                    assert!(!got.is_empty(), "cut {cut}: Ok means something was read");
                    for ((d, p), (sd, sp)) in got.iter().zip(&saved) {
                        assert_eq!((d, p), (sd, &**sp), "cut {cut}");
                    }
                }
                Err(StoreError::Corrupt { .. }) => {
                    // Only when not even the first entry survived.
                    let first_end = whole
                        .windows(11)
                        .position(|w| w == b"},{\"domain\"")
                        .unwrap();
                    assert!(cut <= first_end, "cut {cut} lost everything");
                }
                Err(e) => panic!("cut {cut}: {e}"),
            }
        }
    }

    /// A tampered entry (an mx pattern SPEC 4.4 refuses, a huge max_age) is dropped
    /// or clamped; its neighbours load.
    #[test]
    fn invalid_entries_are_skipped_and_max_age_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save(&Snapshot::wall(policies(3))).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        let text = text
            .replace("mx1.example.net", "*.*.example.net")
            .replace("\"max_age\":86400", "\"max_age\":4000000000");
        fs::write(store.path(), text).unwrap();
        let got = store.load().unwrap();
        let names: Vec<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(names, ["d0.example", "d2.example"]);
        assert!(got
            .iter()
            .all(|(_, p)| p.policy.max_age == crate::mta_sts::MAX_AGE_LIMIT));
        assert!(dir.path().join("policies.json.corrupt").exists());
        // Another format version is not guessed at.
        fs::write(store.path(), "{\"version\":2,\"policies\":[]}").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
    }
}
