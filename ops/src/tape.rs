//! A local reverse-mode tape for compositions of nasflow's own custom ops, and
//! [`fused`], which runs a whole composition (a DARTS mixed edge, a cell) as one candle autograd
//! node.
//!
//! Why: candle's `backward` gives every tensor of the graph a gradient buffer made by
//! `zeros_like` and then `add`s each contribution into a fresh tensor: two extra full passes per
//! node, and one more allocation per extra consumer. In a mixed edge, x feeds seven ops and every
//! op is a chain of four to nine nodes; that bookkeeping was about a fifth of a DARTS search step
//! (bench/PROFILE.md). On this tape a gradient with one contribution is used as it comes, a second
//! one makes one sum, and later ones are added in place; nothing is zero-filled.
//!
//! While [`record`] runs its closure, every custom op of this crate and [`add`],
//! [`cat_channels`], [`weighted_sum`] run without candle's graph and are appended to a
//! thread-local tape; outside `record` they are ordinary candle ops.
//! Only CPU f32 tensors are recorded (the in-place sums are CPU code).

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, InplaceOp2, Layout, Result, Shape, Tensor, TensorId};
use rayon::prelude::*;

use crate::kernels::common::{cpu_kernel_ok, slice, with_slice};

type Op1 = Box<dyn CustomOp1 + Send + Sync>;
type Op2 = Box<dyn CustomOp2 + Send + Sync>;
type Op3 = Box<dyn CustomOp3 + Send + Sync>;

enum NodeOp {
    One(Op1),
    Two(Op2),
    Three(Op3),
    /// An op that exists only on the tape (n-ary: sums, concatenation, weighted sums).
    Native(Box<dyn NativeOp + Send + Sync>),
}

/// The backward of a tape-only op: one optional gradient per argument.
trait NativeOp: Send + Sync {
    fn bwd(&self, args: &[Tensor], grad: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

/// One recorded op: the op (which carries what its backward needs), its arguments and result.
struct Node {
    op: NodeOp,
    args: Vec<Tensor>,
    res_id: TensorId,
    /// Kept for the custom ops' backward (ReLU's reads it); tape-only ops do not need theirs,
    /// so a fused node's final result is not held twice.
    res: Option<Tensor>,
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
    // recording ends when this guard drops, also if `f` panics
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.borrow_mut().take());
        }
    }
    ACTIVE.with(|a| *a.borrow_mut() = Some(Tape::default()));
    let stop = Stop;
    let out = f();
    let tape = ACTIVE.with(|a| a.borrow_mut().take()).unwrap_or_default();
    drop(stop);
    Ok((out?, tape))
}

pub(crate) fn apply1<C: CustomOp1 + Send + Sync + 'static>(x: &Tensor, op: C) -> Result<Tensor> {
    if !recording() {
        return x.apply_op1(op);
    }
    let res = x.apply_op1_no_bwd(&op)?;
    push(Node { op: NodeOp::One(Box::new(op)), args: vec![x.clone()], res_id: res.id(), res: Some(res.clone()) });
    Ok(res)
}

pub(crate) fn apply2<C: CustomOp2 + Send + Sync + 'static>(x: &Tensor, y: &Tensor, op: C) -> Result<Tensor> {
    if !recording() {
        return x.apply_op2(y, op);
    }
    let res = x.apply_op2_no_bwd(y, &op)?;
    push(Node { op: NodeOp::Two(Box::new(op)), args: vec![x.clone(), y.clone()], res_id: res.id(), res: Some(res.clone()) });
    Ok(res)
}

pub(crate) fn apply3<C: CustomOp3 + Send + Sync + 'static>(x: &Tensor, y: &Tensor, z: &Tensor, op: C) -> Result<Tensor> {
    if !recording() {
        return x.apply_op3(y, z, op);
    }
    let res = x.apply_op3_no_bwd(y, z, &op)?;
    push(Node { op: NodeOp::Three(Box::new(op)), args: vec![x.clone(), y.clone(), z.clone()], res_id: res.id(), res: Some(res.clone()) });
    Ok(res)
}

fn push_native(op: impl NativeOp + 'static, args: &[&Tensor], res: &Tensor) {
    push(Node { op: NodeOp::Native(Box::new(op)), args: args.iter().map(|&a| a.clone()).collect(), res_id: res.id(), res: None });
}

/// `a + b` (same shape), recordable: a cell node's sum of its edges.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !recording() {
        return a + b;
    }
    let res = sum2(&a.contiguous()?, &b.contiguous()?)?;
    push_native(Add, &[a, b], &res);
    Ok(res)
}

struct Add;

impl NativeOp for Add {
    fn bwd(&self, _args: &[Tensor], grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // the same (immutable) gradient for both: the tape never adds into a buffer it did not make
        Ok(vec![Some(grad.clone()), Some(grad.clone())])
    }
}

/// `Tensor::cat(xs, 1)` for NCHW tensors, recordable: FactorizedReduce's halves, a cell's output.
pub fn cat_channels(xs: &[&Tensor]) -> Result<Tensor> {
    let res = Tensor::cat(xs, 1)?;
    if recording() {
        push_native(CatChannels, xs, &res);
    }
    Ok(res)
}

struct CatChannels;

impl NativeOp for CatChannels {
    fn bwd(&self, args: &[Tensor], grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let mut at = 0;
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            let c = a.dim(1)?;
            out.push(Some(grad.narrow(1, at, c)?.contiguous()?));
            at += c;
        }
        Ok(out)
    }
}

/// `sum_k w[k] * outs[k]` (w of shape [K]), recordable: a mixed edge's output.
/// Off the tape: one [1,K] x [K,N] matmul over the stacked outputs (1.6x faster than K scaled
/// adds for K=7 on [32,8,28,28] in candle's graph).
pub fn weighted_sum(outs: &[Tensor], w: &Tensor) -> Result<Tensor> {
    let Some(first) = outs.first() else { bail!("weighted_sum of no tensors") };
    let shape = first.shape().clone();
    if let Some(o) = outs.iter().find(|o| o.shape() != &shape) {
        bail!("weighted_sum: tensors of shapes {shape:?} and {:?}", o.shape());
    }
    let k = outs.len();
    if w.dims() != [k] {
        bail!("weighted_sum: {k} tensors but weights of shape {:?}", w.dims());
    }
    if !recording() {
        let stacked = Tensor::stack(outs, 0)?.reshape((k, shape.elem_count()))?;
        return w.reshape((1, k))?.matmul(&stacked)?.reshape(shape);
    }
    let outs: Vec<Tensor> = outs.iter().map(|o| o.contiguous()).collect::<Result<_>>()?;
    let wv = w.to_vec1::<f32>()?;
    let res = Tensor::from_vec(weighted_sum_cpu(&outs, &wv)?, shape, &Device::Cpu)?;
    let mut args: Vec<&Tensor> = outs.iter().collect();
    args.push(w);
    push_native(WeightedSum, &args, &res);
    Ok(res)
}

struct WeightedSum;

impl NativeOp for WeightedSum {
    fn bwd(&self, args: &[Tensor], grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (w, outs) = args.split_last().ok_or_else(|| candle_core::Error::Msg("weighted_sum: no args".into()))?;
        let wv = w.to_vec1::<f32>()?;
        let grad = grad.contiguous()?;
        // d/dw[k] = <outs[k], grad>: f64 partial sums per chunk, reduced in chunk order
        let gw: Vec<f32> = with_slice(&grad, |g| {
            outs.iter()
                .map(|o| {
                    with_slice(o, |ov| {
                        let parts: Vec<f64> = ov.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)).map(|(a, b)| a.iter().zip(b).map(|(&a, &b)| (a * b) as f64).sum()).collect();
                        Ok(parts.iter().sum::<f64>() as f32)
                    })
                })
                .collect()
        })?;
        let mut out: Vec<Option<Tensor>> = wv.iter().map(|&wk| Ok(Some(grad.affine(wk as f64, 0.0)?))).collect::<Result<_>>()?;
        out.push(Some(Tensor::from_vec(gw, w.shape(), &Device::Cpu)?));
        Ok(out)
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
        self.add_id(target.id(), g)
    }

    fn add_id(&mut self, id: TensorId, g: Tensor) -> Result<()> {
        match self.0.get_mut(&id) {
            None => {
                self.0.insert(id, Acc { t: g, owned: false });
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
    pub fn backward(&self, seeds: Vec<(TensorId, Tensor)>) -> Result<Grads> {
        struct Flag;
        impl Drop for Flag {
            fn drop(&mut self) {
                IN_BACKWARD.with(|b| b.set(false));
            }
        }
        IN_BACKWARD.with(|b| b.set(true));
        let _flag = Flag;
        let mut grads = Grads(HashMap::new());
        for (id, g) in seeds {
            grads.add_id(id, g)?;
        }
        for node in self.nodes.iter().rev() {
            let Some(g) = grads.0.remove(&node.res_id).map(|a| a.t) else { continue };
            let a = &node.args;
            let res = || node.res.as_ref().ok_or_else(|| candle_core::Error::Msg("tape: result of a custom op not kept".into()));
            let per_arg: Vec<Option<Tensor>> = match &node.op {
                NodeOp::One(op) => vec![op.bwd(&a[0], res()?, &g)?],
                NodeOp::Two(op) => {
                    let (g0, g1) = op.bwd(&a[0], &a[1], res()?, &g)?;
                    vec![g0, g1]
                }
                NodeOp::Three(op) => {
                    let (g0, g1, g2) = op.bwd(&a[0], &a[1], &a[2], res()?, &g)?;
                    vec![g0, g1, g2]
                }
                NodeOp::Native(op) => op.bwd(a, &g)?,
            };
            for (arg, ga) in a.iter().zip(per_arg) {
                if let Some(ga) = ga {
                    grads.add(arg, ga)?;
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

// ------------------------------------------------------------------ fused node

/// `f(inputs)` as one candle autograd node whose backward runs on a tape (CPU f32; elsewhere,
/// or when already recording, simply `f(inputs)` in candle's graph).
///
/// `f` must build its result from the given inputs with this crate's ops and the recordable
/// [`add`], [`cat_channels`] and [`weighted_sum`]; anything else would cut the gradient (the
/// tests compare every fused user with candle's graph). Gradients reach every input and every
/// `Var` the recorded ops read. The first two inputs go to candle as they are (activations); the
/// rest (small: mixing weights) and the vars are packed into one vector for candle's node.
pub fn fused(inputs: &[&Tensor], f: impl FnOnce(&[Tensor]) -> Result<Tensor>) -> Result<Tensor> {
    let on_cpu = inputs.iter().all(|t| cpu_kernel_ok(t));
    if inputs.is_empty() || !on_cpu || recording() {
        return f(&inputs.iter().map(|&t| t.clone()).collect::<Vec<_>>());
    }
    let detached: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    let (out, tape) = record(|| f(&detached))?;
    let y = out.flatten_all()?.to_vec1::<f32>()?;
    let vars = tape.variables();
    let mut small: Vec<Tensor> = inputs[inputs.len().min(2)..].iter().map(|t| t.flatten_all()).collect::<Result<_>>()?;
    small.extend(vars.iter().map(|v| v.flatten_all()).collect::<Result<Vec<_>>>()?);
    let dummy = || Tensor::zeros(1, DType::F32, &Device::Cpu);
    let packed = if small.is_empty() { dummy()? } else { Tensor::cat(&small, 0)? };
    let second = match inputs.get(1) {
        Some(&t) => t.clone(),
        None => dummy()?,
    };
    let op = Fused { tape, detached, vars, out_shape: out.shape().clone(), out_id: out.id(), y: std::sync::Mutex::new(Some(y)) };
    drop(out);
    inputs[0].apply_op3(&second, &packed, op)
}

struct Fused {
    tape: Tape,
    /// The detached inputs the tape recorded from (their gradients are the inputs').
    detached: Vec<Tensor>,
    vars: Vec<Tensor>,
    out_id: TensorId,
    out_shape: Shape,
    /// The forward's value, copied out before the op is applied and moved out by `cpu_fwd`.
    y: std::sync::Mutex<Option<Vec<f32>>>,
}

impl CustomOp3 for Fused {
    fn name(&self) -> &'static str {
        "nasflow-fused"
    }

    fn cpu_fwd(&self, _s1: &CpuStorage, _l1: &Layout, _s2: &CpuStorage, _l2: &Layout, _s3: &CpuStorage, _l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = self.y.lock().map_err(|_| candle_core::Error::Msg("fused: poisoned lock".into()))?.take();
        match y {
            Some(y) => Ok((CpuStorage::F32(y), self.out_shape.clone())),
            None => bail!("fused: forward applied twice"),
        }
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, packed: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut grads = self.tape.backward(vec![(self.out_id, grad.contiguous()?)])?;
        let mut take = |t: &Tensor, like: &Tensor| -> Result<Tensor> {
            match grads.remove(t) {
                Some(g) => Ok(g),
                None => like.zeros_like(),
            }
        };
        let d = &self.detached;
        let ga = take(&d[0], a)?;
        // an untracked tensor given twice detaches to itself: its one slot holds both gradients
        let gb = match d.get(1) {
            Some(t) if t.id() != d[0].id() => Some(take(t, b)?),
            _ => None,
        };
        let mut parts = Vec::new();
        for t in d.iter().skip(2).chain(&self.vars) {
            parts.push(match grads.get(t) {
                Some(g) => g.flatten_all()?,
                None => t.zeros_like()?.flatten_all()?,
            });
        }
        let gpacked = if parts.is_empty() { None } else { Some(Tensor::cat(&parts, 0)?) };
        debug_assert_eq!(gpacked.as_ref().map_or(1, |p| p.elem_count()), packed.elem_count());
        Ok((Some(ga), gb, gpacked))
    }
}

/// sum_k w[k] * outs[k], in parallel chunks, k in a fixed order.
fn weighted_sum_cpu(outs: &[Tensor], w: &[f32]) -> Result<Vec<f32>> {
    let guards: Vec<_> = outs.iter().map(|o| o.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(outs.len());
    for (st, l) in &guards {
        match &**st {
            candle_core::Storage::Cpu(cs) => slices.push(slice(cs, l)?),
            _ => bail!("weighted_sum: tensor not on the CPU"),
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

