//! A local reverse-mode tape for compositions of nasflow's own custom ops, and
//! [`fused_weighted_sum`], which runs a whole DARTS mixed edge as one candle autograd node.
//!
//! Why: candle's `backward` gives every tensor of the graph a gradient buffer made by
//! `zeros_like` and then `add`s each contribution into a fresh tensor: two extra full passes per
//! node, and one more allocation per extra consumer. In a mixed edge, x feeds seven ops and every
//! op is a chain of four to nine nodes; that bookkeeping was about a fifth of a DARTS search step
//! (bench/PROFILE.md). On this tape a gradient with one contribution is used as it comes, a second
//! one makes one sum, and later ones are added in place; nothing is zero-filled.
//!
//! While [`record`] runs its closure, every custom op of this crate (they all go through
//! [`apply1`] / [`apply2`] / [`apply3`] / [`cat_channels`]) runs without candle's graph and is
//! appended to a thread-local tape; outside `record` they are ordinary candle custom ops.
//! Only CPU f32 tensors are recorded (the in-place sums are CPU code).

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Device, InplaceOp2, Layout, Result, Shape, Tensor, TensorId};
use rayon::prelude::*;

use crate::kernels::common::{cpu_kernel_ok, slice, with_slice};

type Op1 = Box<dyn CustomOp1 + Send + Sync>;
type Op2 = Box<dyn CustomOp2 + Send + Sync>;
type Op3 = Box<dyn CustomOp3 + Send + Sync>;

enum NodeOp {
    One(Op1),
    Two(Op2),
    Three(Op3),
}

/// One recorded op: the op (which carries what its backward needs), its arguments and result.
struct Node {
    op: NodeOp,
    args: Vec<Tensor>,
    res: Tensor,
}

/// The ops recorded by one [`record`] call, in execution (topological) order.
#[derive(Default)]
pub struct Tape {
    nodes: Vec<Node>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Tape>> = const { RefCell::new(None) };
    static IN_BACKWARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a custom op's backward must compute the gradient of `t`: candle's graph says so
/// through `track_op`; on the tape every recorded input is detached, and all are needed.
pub(crate) fn needs_grad(t: &Tensor) -> bool {
    t.track_op() || IN_BACKWARD.with(|b| b.get())
}

fn recording() -> bool {
    ACTIVE.with(|a| a.borrow().is_some())
}

fn push(node: Node) {
    ACTIVE.with(|a| {
        if let Some(t) = a.borrow_mut().as_mut() {
            t.nodes.push(node);
        }
    });
}

/// Runs `f` with recording on and returns its result with the tape. Not reentrant.
pub fn record<R>(f: impl FnOnce() -> Result<R>) -> Result<(R, Tape)> {
    if recording() {
        bail!("nasflow-ops tape: record() called while already recording");
    }
    ACTIVE.with(|a| *a.borrow_mut() = Some(Tape::default()));
    let out = f();
    let tape = ACTIVE.with(|a| a.borrow_mut().take()).unwrap_or_default();
    Ok((out?, tape))
}

pub(crate) fn apply1<C: CustomOp1 + Send + Sync + 'static>(x: &Tensor, op: C) -> Result<Tensor> {
    if !recording() {
        return x.apply_op1(op);
    }
    let res = x.apply_op1_no_bwd(&op)?;
    push(Node { op: NodeOp::One(Box::new(op)), args: vec![x.clone()], res: res.clone() });
    Ok(res)
}

pub(crate) fn apply2<C: CustomOp2 + Send + Sync + 'static>(x: &Tensor, y: &Tensor, op: C) -> Result<Tensor> {
    if !recording() {
        return x.apply_op2(y, op);
    }
    let res = x.apply_op2_no_bwd(y, &op)?;
    push(Node { op: NodeOp::Two(Box::new(op)), args: vec![x.clone(), y.clone()], res: res.clone() });
    Ok(res)
}

pub(crate) fn apply3<C: CustomOp3 + Send + Sync + 'static>(x: &Tensor, y: &Tensor, z: &Tensor, op: C) -> Result<Tensor> {
    if !recording() {
        return x.apply_op3(y, z, op);
    }
    let res = x.apply_op3_no_bwd(y, z, &op)?;
    push(Node { op: NodeOp::Three(Box::new(op)), args: vec![x.clone(), y.clone(), z.clone()], res: res.clone() });
    Ok(res)
}

/// `Tensor::cat(&[a, b], 1)` for two NCHW tensors, recordable (FactorizedReduce's two halves).
pub(crate) fn cat_channels(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !recording() {
        return Tensor::cat(&[a, b], 1);
    }
    apply2(&a.contiguous()?, &b.contiguous()?, CatChannels)
}

struct CatChannels;

impl CustomOp2 for CatChannels {
    fn name(&self) -> &'static str {
        "nasflow-cat-channels"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c1, h, w) = l1.shape().dims4()?;
        let (b2, c2, h2, w2) = l2.shape().dims4()?;
        if (b, h, w) != (b2, h2, w2) {
            bail!("cat_channels: {:?} and {:?} differ outside dim 1", l1.shape(), l2.shape());
        }
        let (x1, x2) = (slice(s1, l1)?, slice(s2, l2)?);
        let (n1, n2) = (c1 * h * w, c2 * h * w);
        let mut out = Vec::with_capacity(b * (n1 + n2));
        for i in 0..b {
            out.extend_from_slice(&x1[i * n1..(i + 1) * n1]);
            out.extend_from_slice(&x2[i * n2..(i + 1) * n2]);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c1 + c2, h, w))))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let c1 = a.dim(1)?;
        let c2 = b.dim(1)?;
        Ok((Some(grad.narrow(1, 0, c1)?.contiguous()?), Some(grad.narrow(1, c1, c2)?.contiguous()?)))
    }
}

// ------------------------------------------------------------------ backward

/// A gradient being accumulated; `owned` when the tape made the buffer itself (safe to add into).
struct Acc {
    t: Tensor,
    owned: bool,
}

/// Gradients from [`Tape::backward`], by tensor.
pub struct Grads(HashMap<TensorId, Acc>);

impl Grads {
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.0.get(&t.id()).map(|a| &a.t)
    }

    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.0.remove(&t.id()).map(|a| a.t)
    }

    fn add(&mut self, target: &Tensor, g: Tensor) -> Result<()> {
        match self.0.get_mut(&target.id()) {
            None => {
                self.0.insert(target.id(), Acc { t: g, owned: false });
            }
            Some(acc) if acc.owned => acc.t.inplace_op2(&g.contiguous()?, &AddAssign)?,
            Some(acc) => {
                acc.t = sum2(&acc.t, &g)?;
                acc.owned = true;
            }
        }
        Ok(())
    }
}

impl Tape {
    /// Reverse pass from `seeds` (tensor, its gradient). Gradients of recorded intermediates
    /// are dropped as soon as they have been propagated; what is left are the gradients of the
    /// tensors the tape did not produce (inputs and parameters).
    pub fn backward(&self, seeds: Vec<(&Tensor, Tensor)>) -> Result<Grads> {
        struct Flag;
        impl Drop for Flag {
            fn drop(&mut self) {
                IN_BACKWARD.with(|b| b.set(false));
            }
        }
        IN_BACKWARD.with(|b| b.set(true));
        let _flag = Flag;
        let mut grads = Grads(HashMap::new());
        for (t, g) in seeds {
            grads.add(t, g)?;
        }
        for node in self.nodes.iter().rev() {
            let Some(g) = grads.remove(&node.res) else { continue };
            let a = &node.args;
            match &node.op {
                NodeOp::One(op) => {
                    if let Some(ga) = op.bwd(&a[0], &node.res, &g)? {
                        grads.add(&a[0], ga)?;
                    }
                }
                NodeOp::Two(op) => {
                    let (g0, g1) = op.bwd(&a[0], &a[1], &node.res, &g)?;
                    for (arg, ga) in a.iter().zip([g0, g1]) {
                        if let Some(ga) = ga {
                            grads.add(arg, ga)?;
                        }
                    }
                }
                NodeOp::Three(op) => {
                    let (g0, g1, g2) = op.bwd(&a[0], &a[1], &a[2], &node.res, &g)?;
                    for (arg, ga) in a.iter().zip([g0, g1, g2]) {
                        if let Some(ga) = ga {
                            grads.add(arg, ga)?;
                        }
                    }
                }
            }
        }
        Ok(grads)
    }

    /// The trainable tensors (candle `Var`s) the recorded ops read, in first-use order.
    pub fn variables(&self) -> Vec<Tensor> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for n in &self.nodes {
            for a in &n.args {
                if a.is_variable() && seen.insert(a.id()) {
                    out.push(a.clone());
                }
            }
        }
        out
    }
}

const CHUNK: usize = 16 * 1024;

fn sum2(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        bail!("tape: gradient shapes {:?} and {:?} differ", a.dims(), b.dims());
    }
    let out = with_slice(a, |x| {
        with_slice(b, |y| {
            let mut out: Vec<f32> = Vec::with_capacity(x.len());
            out.spare_capacity_mut()[..x.len()].par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK))).for_each(|(o, (x, y))| {
                for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                    o.write(x + y);
                }
            });
            // SAFETY: every element was written above.
            unsafe { out.set_len(x.len()) };
            Ok(out)
        })
    })?;
    Tensor::from_vec(out, a.shape(), &Device::Cpu)
}

struct AddAssign;

impl InplaceOp2 for AddAssign {
    fn name(&self) -> &'static str {
        "nasflow-add-assign"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let y = slice(s2, l2)?;
        let CpuStorage::F32(v) = s1 else { bail!("tape: gradients must be f32") };
        let Some((a, b)) = l1.contiguous_offsets() else { bail!("tape: gradient buffer is not contiguous") };
        let x = &mut v[a..b];
        if x.len() != y.len() {
            bail!("tape: gradient sizes {} and {} differ", x.len(), y.len());
        }
        x.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(x, y)| {
            for (x, &y) in x.iter_mut().zip(y) {
                *x += y;
            }
        });
        Ok(())
    }
}

// ------------------------------------------------------------------ fused weighted sum

/// `sum_k w[k] * f(x)[k]` as one candle autograd node (CPU f32; elsewhere the plain sum).
///
/// `f` builds the candidate outputs from x with this crate's ops (recorded on a tape, see the
/// module docs); it may return x itself. Gradients reach x, `w` and every `Var` the ops read,
/// exactly as with the unfused graph (up to float summation order).
pub fn fused_weighted_sum(x: &Tensor, w: &Tensor, f: impl FnOnce(&Tensor) -> Result<Vec<Tensor>>) -> Result<Tensor> {
    if !(cpu_kernel_ok(x) && cpu_kernel_ok(w)) || recording() {
        return plain_weighted_sum(&f(x)?, w);
    }
    let xd = x.detach();
    let (outs, tape) = record(|| f(&xd))?;
    let k = outs.len();
    if w.dims() != [k] {
        bail!("fused_weighted_sum: {k} outputs but weights of shape {:?}", w.dims());
    }
    let Some(first) = outs.first() else { bail!("fused_weighted_sum: no outputs") };
    let shape = first.shape().clone();
    if let Some(o) = outs.iter().find(|o| o.shape() != &shape) {
        bail!("fused_weighted_sum: outputs of shapes {shape:?} and {:?}", o.shape());
    }
    let wv = w.to_vec1::<f32>()?;
    let outs: Vec<Tensor> = outs.iter().map(|o| o.contiguous()).collect::<Result<_>>()?;
    let y = weighted_sum(&outs, &wv)?;
    let vars = tape.variables();
    let packed = if vars.is_empty() {
        Tensor::zeros(1, w.dtype(), w.device())?
    } else {
        Tensor::cat(&vars.iter().map(|v| v.flatten_all()).collect::<Result<Vec<_>>>()?, 0)?
    };
    let op = FusedSum { tape, xd, outs, wv, vars, shape, y: std::sync::Mutex::new(Some(y)) };
    x.apply_op3(&packed, &w.contiguous()?, op)
}

fn plain_weighted_sum(outs: &[Tensor], w: &Tensor) -> Result<Tensor> {
    let Some(first) = outs.first() else { bail!("weighted sum of no outputs") };
    let shape = first.shape().clone();
    let k = outs.len();
    let stacked = Tensor::stack(outs, 0)?.reshape((k, shape.elem_count()))?;
    w.reshape((1, k))?.matmul(&stacked)?.reshape(shape)
}

/// sum_k w[k] * outs[k], in parallel chunks, k in a fixed order.
fn weighted_sum(outs: &[Tensor], w: &[f32]) -> Result<Vec<f32>> {
    let guards: Vec<_> = outs.iter().map(|o| o.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(outs.len());
    for (st, l) in &guards {
        match &**st {
            candle_core::Storage::Cpu(cs) => slices.push(slice(cs, l)?),
            _ => bail!("fused_weighted_sum: output not on the CPU"),
        }
    }
    let n = slices[0].len();
    let mut out: Vec<f32> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n].par_chunks_mut(CHUNK).enumerate().for_each(|(ci, o)| {
        let base = ci * CHUNK;
        for (j, o) in o.iter_mut().enumerate() {
            let mut acc = 0f32;
            for (s, &wk) in slices.iter().zip(w) {
                acc += wk * s[base + j];
            }
            o.write(acc);
        }
    });
    // SAFETY: every element was written above.
    unsafe { out.set_len(n) };
    Ok(out)
}

struct FusedSum {
    tape: Tape,
    /// The detached x the tape recorded from (its gradient is x's).
    xd: Tensor,
    outs: Vec<Tensor>,
    wv: Vec<f32>,
    vars: Vec<Tensor>,
    shape: Shape,
    /// The forward's value, computed before the op is applied and moved out by `cpu_fwd`.
    y: std::sync::Mutex<Option<Vec<f32>>>,
}

impl CustomOp3 for FusedSum {
    fn name(&self) -> &'static str {
        "nasflow-fused-weighted-sum"
    }

    fn cpu_fwd(&self, _s1: &CpuStorage, _l1: &Layout, _s2: &CpuStorage, _l2: &Layout, _s3: &CpuStorage, _l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = self.y.lock().map_err(|_| candle_core::Error::Msg("fused_weighted_sum: poisoned lock".into()))?.take();
        match y {
            Some(y) => Ok((CpuStorage::F32(y), self.shape.clone())),
            None => bail!("fused_weighted_sum: forward applied twice"),
        }
    }

    fn bwd(&self, x: &Tensor, packed: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        // d/dw[k] = <outs[k], grad>, f64 partial sums per chunk, reduced in chunk order
        let gw: Vec<f32> = with_slice(&grad, |g| {
            self.outs
                .iter()
                .map(|o| {
                    with_slice(o, |ov| {
                        let parts: Vec<f64> = ov.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)).map(|(a, b)| a.iter().zip(b).map(|(&a, &b)| (a * b) as f64).sum()).collect();
                        Ok(parts.iter().sum::<f64>() as f32)
                    })
                })
                .collect()
        })?;
        let seeds: Vec<(&Tensor, Tensor)> = self.outs.iter().zip(&self.wv).map(|(o, &wk)| Ok((o, grad.affine(wk as f64, 0.0)?))).collect::<Result<_>>()?;
        let mut grads = self.tape.backward(seeds)?;
        let gx = match grads.remove(&self.xd) {
            Some(g) => g,
            None => x.zeros_like()?,
        };
        let gpacked = if self.vars.is_empty() {
            None
        } else {
            let parts: Vec<Tensor> = self
                .vars
                .iter()
                .map(|v| match grads.get(v) {
                    Some(g) => g.flatten_all(),
                    None => Ok(v.zeros_like()?.flatten_all()?),
                })
                .collect::<Result<_>>()?;
            Some(Tensor::cat(&parts, 0)?)
        };
        debug_assert_eq!(gpacked.as_ref().map(|p| p.elem_count()).unwrap_or(1), packed.elem_count());
        Ok((Some(gx), gpacked, Some(Tensor::from_vec(gw, w.shape(), &Device::Cpu)?)))
    }
}
