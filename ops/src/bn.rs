use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, ModuleT, VarBuilder};


pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// BatchNorm2d with PyTorch semantics (eps 1e-5, momentum 0.1).
///
/// Var names under the given VarBuilder: `weight`, `bias` (only when affine), `running_mean`,
/// `running_var` (always; they live in the VarMap so checkpoints carry them, and get no gradient).
///
/// `forward_t(x, true)` normalises with the batch statistics (biased variance) and updates the
/// running statistics with momentum 0.1 and the *unbiased* batch variance; `forward_t(x, false)`
/// uses the running statistics.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    channels: usize,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    pub fn new(channels: usize, affine: bool, vb: VarBuilder) -> Result<Self> {
        let (weight, bias) = if affine {
            (
                Some(vb.get_with_hints(channels, "weight", Init::Const(1.0))?),
                Some(vb.get_with_hints(channels, "bias", Init::Const(0.0))?),
            )
        } else {
            (None, None)
        };
        let rm = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let rv = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        Ok(Self {
            channels,
            weight,
            bias,
            running_mean: Var::from_tensor(&rm)?,
            running_var: Var::from_tensor(&rv)?,
            eps: BN_EPS,
            momentum: BN_MOMENTUM,
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }
    pub fn is_affine(&self) -> bool {
        self.weight.is_some()
    }
    pub fn weight(&self) -> Option<&Tensor> {
        self.weight.as_ref()
    }
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    pub fn running_mean(&self) -> &Var {
        &self.running_mean
    }
    pub fn running_var(&self) -> &Var {
        &self.running_var
    }

    fn wb(&self) -> Option<(&Tensor, &Tensor)> {
        match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => Some((w, b)),
            _ => None,
        }
    }

    /// running <- (1 - m) running + m batch, with the unbiased variance.
    fn update_running(&self, mean: &Tensor, var_biased: &Tensor, n: usize) -> Result<()> {
        let m = self.momentum;
        let unbiased = if n > 1 { (var_biased * (n as f64 / (n as f64 - 1.0)))? } else { var_biased.clone() };
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach() * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased.detach() * m)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(())
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if c != self.channels {
            candle_core::bail!("BatchNorm({}) got input {:?}", self.channels, x.dims());
        }
        if train {
            // custom op on CPU/f32, stock candle ops elsewhere
            let (y, mean, var) = crate::kernels::bn::bn_train(x, self.wb(), self.eps)?;
            self.update_running(&mean, &var, b * h * w)?;
            Ok(y)
        } else {
            crate::kernels::bn::bn_eval(x, self.wb(), self.running_mean.as_tensor(), self.running_var.as_tensor(), self.eps)
        }
    }
}
