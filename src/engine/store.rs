//! The content-addressed store. Files are objects named by their blake3
//! digest; a folder is a tree object (a canonical JSON manifest of its files'
//! paths and digests). Stage records map a fingerprint to output digests and
//! are written only once every output object is in place.

use super::atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub struct Store {
    pub root: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Tree,
}

/// A stored artifact: a file or a folder.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    pub kind: Kind,
    pub digest: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct TreeEntry {
    path: String,
    digest: String,
    executable: bool,
}

/// What a finished stage left: written after all its outputs are stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub fingerprint: String,
    pub op: String,
    pub op_version: u32,
    /// The fingerprint's inputs, for explaining why a stage is stale.
    pub preimage: serde_json::Value,
    pub outputs: BTreeMap<String, Artifact>,
    pub started: String,
    pub ended: String,
    pub host: String,
    pub nasflow_version: String,
}

pub fn hash_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        for d in ["objects", "records", "work", "tmp", "locks"] {
            std::fs::create_dir_all(root.join(d)).with_context(|| format!("cannot create the store at {}", root.display()))?;
        }
        Ok(Store { root: root.to_path_buf() })
    }

    pub fn object_path(&self, digest: &str) -> PathBuf {
        self.root.join("objects").join(&digest[..2.min(digest.len())]).join(digest)
    }

    fn record_path(&self, fingerprint: &str) -> PathBuf {
        self.root.join("records").join(format!("{fingerprint}.json"))
    }

    pub fn work_dir(&self, fingerprint: &str) -> PathBuf {
        self.root.join("work").join(fingerprint)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Move (or copy) one file into the store; returns its digest.
    fn put_file(&self, path: &Path) -> Result<String> {
        let digest = hash_file(path)?;
        let dest = self.object_path(&digest);
        if !dest.exists() {
            let dir = dest.parent().context("object path has no parent")?;
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".in-{}-{}", std::process::id(), atomic::unique()));
            std::fs::copy(path, &tmp).with_context(|| format!("cannot copy {} into the store", path.display()))?;
            std::fs::File::open(&tmp)?.sync_all().ok();
            let mut perm = std::fs::metadata(&tmp)?.permissions();
            perm.set_readonly(true);
            std::fs::set_permissions(&tmp, perm)?;
            std::fs::rename(&tmp, &dest)?;
        }
        Ok(digest)
    }

    /// Store a file or a folder.
    pub fn put(&self, path: &Path) -> Result<Artifact> {
        let meta = std::fs::metadata(path).with_context(|| format!("output {} was not written", path.display()))?;
        if meta.is_file() {
            return Ok(Artifact { kind: Kind::File, digest: self.put_file(path)? });
        }
        let mut entries = Vec::new();
        collect(path, path, &mut entries)?;
        let mut tree = Vec::new();
        for (rel, abs) in entries {
            let executable = is_executable(&abs);
            tree.push(TreeEntry { path: rel, digest: self.put_file(&abs)?, executable });
        }
        let bytes = serde_json::to_vec(&tree)?;
        let digest = blake3::hash(&bytes).to_hex().to_string();
        let dest = self.object_path(&digest);
        if !dest.exists() {
            atomic::write(&dest, &bytes)?;
        }
        Ok(Artifact { kind: Kind::Tree, digest })
    }

    /// Check an object's bytes against its name.
    pub fn verify(&self, a: &Artifact) -> Result<()> {
        let p = self.object_path(&a.digest);
        let check = |p: &Path, digest: &str| -> Result<()> {
            let got = hash_file(p).with_context(|| format!("store object {digest} is missing"))?;
            if got != digest {
                // A corrupt object is garbage: remove it so a recompute can store the good bytes.
                let _ = std::fs::remove_file(p);
                bail!("store object {} is corrupt (its content hashes to {})", p.display(), got);
            }
            Ok(())
        };
        check(&p, &a.digest)?;
        if a.kind == Kind::Tree {
            for e in self.tree(&a.digest)? {
                check(&self.object_path(&e.digest), &e.digest)?;
            }
        }
        Ok(())
    }

    fn tree(&self, digest: &str) -> Result<Vec<TreeEntry>> {
        let p = self.object_path(digest);
        let bytes = std::fs::read(&p).with_context(|| format!("store object {digest} is missing"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("store tree object {} is corrupt", p.display()))
    }

    /// Every object digest an artifact references (itself and a tree's files).
    pub fn referenced(&self, a: &Artifact) -> Vec<String> {
        let mut v = vec![a.digest.clone()];
        if a.kind == Kind::Tree {
            if let Ok(t) = self.tree(&a.digest) {
                v.extend(t.into_iter().map(|e| e.digest));
            }
        }
        v
    }

    /// Lay an artifact out at `dest` as symlinks into the store (read-only objects).
    pub fn materialize(&self, a: &Artifact, dest: &Path) -> Result<()> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match a.kind {
            Kind::File => link(&self.object_path(&a.digest), dest),
            Kind::Tree => {
                std::fs::create_dir_all(dest)?;
                for e in self.tree(&a.digest)? {
                    let target = dest.join(&e.path);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    link(&self.object_path(&e.digest), &target)?;
                }
                Ok(())
            }
        }
    }

    pub fn record(&self, fingerprint: &str) -> Option<Record> {
        let bytes = std::fs::read(self.record_path(fingerprint)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn put_record(&self, r: &Record) -> Result<()> {
        atomic::write_json(&self.record_path(&r.fingerprint), r)
    }

    pub fn drop_record(&self, fingerprint: &str) {
        let _ = std::fs::remove_file(self.record_path(fingerprint));
    }

    pub fn records(&self) -> Vec<Record> {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.root.join("records")) {
            for e in rd.flatten() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    if let Ok(r) = serde_json::from_slice::<Record>(&bytes) {
                        v.push(r);
                    }
                }
            }
        }
        v
    }
}

fn link(target: &Path, dest: &Path) -> Result<()> {
    if dest.symlink_metadata().is_ok() {
        std::fs::remove_file(dest).ok();
    }
    let target = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    std::os::unix::fs::symlink(&target, dest).with_context(|| format!("cannot link {} -> {}", dest.display(), target.display()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let meta = std::fs::metadata(&p)?;
        if meta.is_dir() {
            collect(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
            out.push((rel, p));
        }
    }
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}
