//! Which device a stage runs on. The engine only decides and passes on a
//! device class, "cpu" or "cuda" (in the stage's `StageCtx`, its job file
//! and its fingerprint); what a class means to a model is the stage op's
//! business (src/stages/common.rs maps it to a candle device).

use anyhow::{bail, Result};

pub const CPU: &str = "cpu";
pub const CUDA: &str = "cuda";

/// True when this nasflow was built with the `cuda` feature.
pub fn cuda_built() -> bool {
    cfg!(feature = "cuda")
}

/// How `nasflow run --device` picks each stage's device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DevicePolicy {
    /// A stage whose op runs models and whose `resources.gpus` is at least 1
    /// runs on CUDA when this nasflow has CUDA; every other stage on the CPU.
    #[default]
    Auto,
    /// Every stage on the CPU.
    Cpu,
    /// Every stage whose op runs models on CUDA (GPU 0), whatever its
    /// `resources` say; the others on the CPU.
    Cuda,
}

impl DevicePolicy {
    /// The device class of a stage. `uses_device`: its op runs models (see
    /// `OpSpec::uses_device`); an op that does not always gets "cpu", so
    /// its fingerprint does not depend on where the models ran.
    pub fn stage_device(self, uses_device: bool, gpus: u64) -> &'static str {
        if !uses_device {
            return CPU;
        }
        match self {
            DevicePolicy::Cpu => CPU,
            DevicePolicy::Cuda => CUDA,
            DevicePolicy::Auto if gpus >= 1 && cuda_built() => CUDA,
            DevicePolicy::Auto => CPU,
        }
    }

    /// `--device cuda` on a build without CUDA is refused before anything runs.
    pub fn check(self) -> Result<()> {
        if self == DevicePolicy::Cuda && !cuda_built() {
            bail!("{}", no_cuda_message("--device cuda"));
        }
        Ok(())
    }
}

/// What to say when CUDA is asked of a nasflow built without it.
pub fn no_cuda_message(what: &str) -> String {
    format!(
        "{what}: this nasflow was built without CUDA support; rebuild it with `cargo build --release --features cuda` \
         (needs the CUDA toolkit, see docs/cuda.md), or run with `--device cpu` (or `--device auto`, which uses the CPU on this build)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_picks_the_device_per_stage() {
        // Ops that run no model are on the CPU whatever is asked.
        for p in [DevicePolicy::Auto, DevicePolicy::Cpu, DevicePolicy::Cuda] {
            assert_eq!(p.stage_device(false, 1), CPU);
        }
        assert_eq!(DevicePolicy::Cpu.stage_device(true, 4), CPU);
        assert_eq!(DevicePolicy::Cuda.stage_device(true, 0), CUDA);
        assert_eq!(DevicePolicy::Auto.stage_device(true, 0), CPU);
        assert_eq!(DevicePolicy::Auto.stage_device(true, 1), if cuda_built() { CUDA } else { CPU });
    }

    #[test]
    fn cuda_is_refused_without_the_feature() {
        assert!(DevicePolicy::Auto.check().is_ok());
        assert!(DevicePolicy::Cpu.check().is_ok());
        let r = DevicePolicy::Cuda.check();
        assert_eq!(r.is_ok(), cuda_built());
        if let Err(e) = r {
            let msg = e.to_string();
            assert!(msg.contains("--features cuda") && msg.contains("docs/cuda.md") && msg.contains("--device cpu"), "{msg}");
        }
    }
}
