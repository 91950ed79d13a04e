//! Compiles the CUDA kernels (ops/cuda/*.cu) to PTX with nvcc, only when the `cuda` feature is
//! on; the default (CPU) build does nothing here and needs no CUDA toolkit.
//!
//! * nvcc: `$NVCC` if set, else `nvcc` on the PATH.
//! * target: `compute_$CUDA_COMPUTE_CAP` (e.g. `CUDA_COMPUTE_CAP=90`; `9.0`, `sm_90` and
//!   `compute_90` are accepted too), default `compute_80`. PTX is JIT-compiled by the driver for
//!   the GPU it runs on, so compute_80 PTX also runs on newer GPUs (H100); the driver must be at
//!   least as new as the nvcc that wrote the PTX.
//!
//! Each `ops/cuda/NAME.cu` becomes `$OUT_DIR/NAME.ptx`, included by `src/kernels/cuda.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed=cuda");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");

    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    match Command::new(&nvcc).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        other => {
            let why = match other {
                Ok(o) => format!("`{nvcc} --version` failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
                Err(e) => format!("cannot run `{nvcc}`: {e}"),
            };
            panic!(
                "\n\nnasflow-ops: the `cuda` feature needs NVIDIA's nvcc to compile ops/cuda/*.cu ({why}).\n\
                 Install a CUDA toolkit (e.g. /usr/local/cuda, then PATH=/usr/local/cuda/bin:$PATH), or\n\
                 `pip install nvidia-cuda-nvcc nvidia-cuda-runtime` and put the wheel's bin/ on the PATH,\n\
                 or point NVCC at the nvcc binary. candle's own CUDA kernels need the same nvcc.\n\
                 See docs/cuda.md. Build without `--features cuda` for the CPU-only crate.\n\n"
            );
        }
    }

    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_default();
    let digits: String = cap.chars().filter(|c| c.is_ascii_digit()).collect();
    let arch = if digits.is_empty() { "compute_80".to_string() } else { format!("compute_{digits}") };

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut sources: Vec<PathBuf> = std::fs::read_dir("cuda")
        .expect("nasflow-ops: cannot read ops/cuda")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        compile(&nvcc, &arch, src, &out);
    }
}

fn compile(nvcc: &str, arch: &str, src: &Path, out: &Path) {
    let ptx = out.join(src.with_extension("ptx").file_name().unwrap());
    let status = Command::new(nvcc)
        .args(["-ptx", &format!("-arch={arch}"), "-O3", "-std=c++17", "-o"])
        .arg(&ptx)
        .arg(src)
        .status()
        .unwrap_or_else(|e| panic!("nasflow-ops: running {nvcc}: {e}"));
    if !status.success() {
        panic!("nasflow-ops: `{nvcc} -ptx -arch={arch}` failed on {} ({status})", src.display());
    }
}
