//! Per-epoch checkpoints: `dir/checkpoint.safetensors` (every network
//! variable, BN running stats included, optimiser states and extra tensors
//! such as DARTS's alphas) and `dir/checkpoint.json` (epochs done, metrics so
//! far, and the size and checksum of the tensor file).
//!
//! Both files are written atomically (temp file, fsync, rename), the JSON
//! last: a run killed mid-save leaves either the previous checkpoint or a
//! pair whose checksum does not match, which `load` reports instead of
//! resuming from a mix of two epochs.
//!
//! Whatever device the tensors live on, files are written from CPU copies,
//! so a checkpoint or weights file has the same bytes whichever device made
//! it; `load` puts the tensors on the device the loop runs on.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;

pub const TENSORS_FILE: &str = "checkpoint.safetensors";
pub const META_FILE: &str = "checkpoint.json";
const FORMAT: u64 = 1;

/// Everything needed to resume a training loop.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// Every variable of the network's VarMap, by its VarMap name.
    pub model: HashMap<String, Tensor>,
    /// Optimiser states (`Sgd::state`, `Adam::state`) by optimiser name.
    pub optimizers: BTreeMap<String, Vec<(String, Tensor)>>,
    /// Other tensors (e.g. architecture parameters), by name.
    pub extra: HashMap<String, Tensor>,
    /// Loop-defined JSON: epochs done, metrics so far, config.
    pub meta: serde_json::Value,
}

impl Checkpoint {
    /// Writes the checkpoint into `dir` (created if needed), atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating checkpoint folder {}", dir.display()))?;
        let mut all: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in &self.model {
            all.insert(format!("model/{name}"), on_cpu(t)?);
        }
        for (opt, state) in &self.optimizers {
            if opt.contains('/') {
                bail!("checkpoint: optimiser name `{opt}` must not contain '/'");
            }
            for (key, t) in state {
                all.insert(format!("optim/{opt}/{key}"), on_cpu(t)?);
            }
        }
        for (name, t) in &self.extra {
            all.insert(format!("extra/{name}"), on_cpu(t)?);
        }

        let tensors_path = dir.join(TENSORS_FILE);
        let tmp = dir.join(format!("{TENSORS_FILE}.tmp"));
        candle_core::safetensors::save(&all, &tmp)
            .with_context(|| format!("writing checkpoint tensors to {}", tmp.display()))?;
        let bytes = fs::read(&tmp).with_context(|| format!("reading back {}", tmp.display()))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, &tensors_path)
            .with_context(|| format!("renaming {} into place", tmp.display()))?;

        let meta = serde_json::json!({
            "format": FORMAT,
            "tensors_bytes": bytes.len(),
            "tensors_fnv1a64": format!("{:016x}", fnv1a64(&bytes)),
            "meta": self.meta,
        });
        let text = serde_json::to_string_pretty(&meta)?;
        write_atomic(&dir.join(META_FILE), text.as_bytes())?;
        // Make the renames themselves durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads the checkpoint in `dir`. None when there is none (no JSON yet: a
    /// first save that never finished counts as none). A damaged or
    /// mismatched pair is an error that names the file.
    pub fn load(dir: &Path, device: &Device) -> Result<Option<Checkpoint>> {
        let meta_path = dir.join(META_FILE);
        let tensors_path = dir.join(TENSORS_FILE);
        if !meta_path.exists() {
            return Ok(None);
        }
        let restart = |p: &Path| {
            format!(
                "delete {} (or the folder {}) to restart from scratch",
                p.display(),
                dir.display()
            )
        };
        let text = fs::read_to_string(&meta_path)
            .with_context(|| format!("reading {}", meta_path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "checkpoint {} is corrupt (not JSON); {}",
                meta_path.display(),
                restart(&meta_path)
            )
        })?;
        if json.get("format").and_then(|v| v.as_u64()) != Some(FORMAT) {
            bail!(
                "checkpoint {} has an unknown format; {}",
                meta_path.display(),
                restart(&meta_path)
            );
        }
        let bytes = fs::read(&tensors_path).with_context(|| {
            format!(
                "checkpoint {} names missing tensors {}; {}",
                meta_path.display(),
                tensors_path.display(),
                restart(&meta_path)
            )
        })?;
        let want_len = json.get("tensors_bytes").and_then(|v| v.as_u64());
        let want_sum = json.get("tensors_fnv1a64").and_then(|v| v.as_str());
        let got_sum = format!("{:016x}", fnv1a64(&bytes));
        if want_len != Some(bytes.len() as u64) || want_sum != Some(got_sum.as_str()) {
            bail!(
                "checkpoint {} does not match {} (damaged, or the run was killed while saving); {}",
                tensors_path.display(),
                meta_path.display(),
                restart(&tensors_path)
            );
        }
        let all = candle_core::safetensors::load_buffer(&bytes, device).with_context(|| {
            format!(
                "checkpoint {} is corrupt; {}",
                tensors_path.display(),
                restart(&tensors_path)
            )
        })?;

        let mut ck = Checkpoint {
            meta: json.get("meta").cloned().unwrap_or_default(),
            ..Default::default()
        };
        for (key, t) in all {
            if let Some(name) = key.strip_prefix("model/") {
                ck.model.insert(name.to_string(), t);
            } else if let Some(name) = key.strip_prefix("extra/") {
                ck.extra.insert(name.to_string(), t);
            } else if let Some((opt, k)) =
                key.strip_prefix("optim/").and_then(|r| r.split_once('/'))
            {
                ck.optimizers
                    .entry(opt.to_string())
                    .or_default()
                    .push((k.to_string(), t));
            } else {
                bail!(
                    "checkpoint {} holds an unexpected entry `{key}`; {}",
                    tensors_path.display(),
                    restart(&tensors_path)
                );
            }
        }
        for state in ck.optimizers.values_mut() {
            state.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(Some(ck))
    }

    /// An optimiser's state, empty when the checkpoint has none for it.
    pub fn optimizer(&self, name: &str) -> &[(String, Tensor)] {
        self.optimizers
            .get(name)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    pub fn extra(&self, name: &str) -> Result<&Tensor> {
        self.extra
            .get(name)
            .with_context(|| format!("checkpoint has no tensor `{name}`"))
    }

    pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join(TENSORS_FILE), dir.join(META_FILE))
    }
}

/// CPU copies of every variable in a VarMap (weights and BN running stats),
/// for files; `restore_varmap` moves them back to the variables' device.
pub fn snapshot_varmap(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("VarMap lock poisoned"))?;
    data.iter()
        .map(|(n, v)| Ok((n.clone(), cpu_copy(v.as_tensor())?)))
        .collect()
}

/// A copy of `t` in CPU memory that later updates of `t` (a `Var` stepped in
/// place) do not reach: `copy` on the CPU, a transfer from any other device.
pub fn cpu_copy(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.device().is_cpu() {
        t.copy()
    } else {
        t.to_device(&Device::Cpu)
    }
}

/// `t` itself on the CPU, else a CPU copy (for writing it out at once).
fn on_cpu(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.device().is_cpu() {
        Ok(t.clone())
    } else {
        t.to_device(&Device::Cpu)
    }
}

/// Sets every variable of `varmap` from `values`; a variable missing from
/// `values` or with another shape is an error (wrong network for this file).
pub fn restore_varmap(
    varmap: &VarMap,
    values: &HashMap<String, Tensor>,
    source: &str,
) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("VarMap lock poisoned"))?;
    for (name, var) in data.iter() {
        let t = values.get(name).with_context(|| {
            format!(
                "{source} has no tensor `{name}`: it was written for another network configuration"
            )
        })?;
        if t.shape() != var.shape() {
            bail!(
                "{source}: `{name}` has shape {:?}, the network expects {:?}",
                t.shape(),
                var.shape()
            );
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)
            .with_context(|| format!("{source}: setting `{name}`"))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` via a synced temp file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Saves tensors as safetensors atomically (temp file, fsync, rename), from
/// CPU copies whatever their device.
pub fn save_safetensors_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    let cpu = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), on_cpu(t)?)))
        .collect::<candle_core::Result<HashMap<String, Tensor>>>()?;
    candle_core::safetensors::save(&cpu, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// FNV-1a, 64 bit: a cheap checksum to detect a torn or damaged tensor file.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
