//! A stage's fingerprint: blake3 of a canonical JSON preimage holding the
//! op's name and version, resolved params, input digests, the data set's
//! digest, dependency files' digests and the device class the stage runs on
//! ("cpu" or "cuda", see `engine::device`: CPU and GPU results are not
//! interchangeable bit for bit). Nothing else: not paths of run directories,
//! not timestamps.

use super::atomic;
use anyhow::{Context, Result};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

pub fn preimage(
    op: &str,
    version: u32,
    params: &BTreeMap<String, Json>,
    inputs: &BTreeMap<String, Json>,
    data: Option<(&str, &str)>,
    deps: &BTreeMap<String, String>,
    device: &str,
) -> Json {
    json!({
        "op": op,
        "op_version": version,
        "params": params,
        "inputs": inputs,
        "data": data.map(|(format, digest)| json!({"format": format, "digest": digest})),
        "deps": deps,
        "device": device,
    })
}

/// serde_json maps are sorted (BTreeMap), so this text is canonical.
pub fn fingerprint(preimage: &Json) -> String {
    blake3::hash(preimage.to_string().as_bytes()).to_hex().to_string()
}

/// Digests of files and folders, remembered by (path, size, mtime) so a
/// no-op rerun does not re-read a 200 MB data set.
pub struct DigestCache {
    path: std::path::PathBuf,
    memo: Mutex<BTreeMap<String, (u64, i128, String)>>,
    dirty: Mutex<bool>,
}

impl DigestCache {
    pub fn open(store_root: &Path) -> DigestCache {
        let path = store_root.join("digests.json");
        let memo = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        DigestCache { path, memo: Mutex::new(memo), dirty: Mutex::new(false) }
    }

    pub fn digest(&self, path: &Path) -> Result<String> {
        let meta = std::fs::metadata(path).with_context(|| format!("{} does not exist", path.display()))?;
        if meta.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)?.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            let mut h = blake3::Hasher::new();
            for e in entries {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with('.') {
                    continue;
                }
                let d = self.digest(&e.path())?;
                h.update(name.as_bytes());
                h.update(b"\0");
                h.update(d.as_bytes());
                h.update(b"\n");
            }
            return Ok(h.finalize().to_hex().to_string());
        }
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).to_string_lossy().to_string();
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        if let Ok(memo) = self.memo.lock() {
            if let Some((len, mt, d)) = memo.get(&key) {
                if *len == meta.len() && *mt == mtime {
                    return Ok(d.clone());
                }
            }
        }
        let d = super::store::hash_file(path)?;
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(key, (meta.len(), mtime, d.clone()));
            if let Ok(mut dirty) = self.dirty.lock() {
                *dirty = true;
            }
        }
        Ok(d)
    }

    pub fn save(&self) {
        let dirty = self.dirty.lock().map(|d| *d).unwrap_or(false);
        if dirty {
            if let Ok(memo) = self.memo.lock() {
                let _ = atomic::write_json(&self.path, &*memo);
            }
        }
    }
}
