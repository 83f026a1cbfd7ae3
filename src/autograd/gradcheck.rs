//! Gradient checking: analytic gradients from [`Tensor::backward`] against central finite
//! differences, in `f64`.
//!
//! A function with any output shape is reduced to a scalar by a fixed random projection
//! `L = Σ out ⊙ R`, so every output element contributes with a different weight (a plain sum
//! would hide errors that cancel, e.g. in softmax). For each input, at most
//! [`GradcheckOptions::max_coords`] coordinates are sampled and perturbed by ±ε.
//!
//! Error measure, per coordinate: `|analytic − numeric| / max(|numeric|, 1e-2 · max|numeric|,
//! floor)`: relative where the gradient is not tiny. Central differences carry roundoff of
//! about `ε_mach·|L|/ε ≈ 1e-10·|L|` (f64, ε = 1e-6); `floor = 1e-3·max(1, |L|)` turns that
//! noise into an error of at most ~1e-7, so a coordinate whose true gradient is zero (e.g. a
//! key bias under softmax) cannot fail on noise, while any gradient above ~1e-5 that is off
//! by 0.1% still fails the 1e-6 tolerance.

use crate::autograd::no_grad;
use crate::rng::Philox;
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// Settings of a gradient check.
#[derive(Clone, Debug)]
pub struct GradcheckOptions {
    /// Step of the central difference.
    pub eps: f64,
    /// Coordinates sampled per input tensor (all of them when the tensor is smaller).
    pub max_coords: usize,
    /// Largest acceptable error (see the module documentation).
    pub tolerance: f64,
    /// Seed of the projection and of the coordinate sampling.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            max_coords: 200,
            tolerance: 1e-6,
            seed: 0x6772_6164,
        }
    }
}

/// The outcome of a gradient check.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Per input: the worst error, and at which flat index, with both values there.
    pub inputs: Vec<InputReport>,
    /// The tolerance the check was run with.
    pub tolerance: f64,
}

/// The worst coordinate of one input.
#[derive(Clone, Debug)]
pub struct InputReport {
    /// Worst error (see the module documentation).
    pub max_error: f64,
    /// Flat index of the worst coordinate.
    pub index: usize,
    /// Analytic gradient there.
    pub analytic: f64,
    /// Numeric gradient there.
    pub numeric: f64,
    /// How many coordinates were checked.
    pub checked: usize,
}

impl GradcheckReport {
    /// The worst error over all inputs.
    pub fn max_error(&self) -> f64 {
        self.inputs.iter().map(|r| r.max_error).fold(0.0, f64::max)
    }

    /// Whether every input is within the tolerance.
    pub fn passed(&self) -> bool {
        self.max_error() <= self.tolerance
    }
}

impl std::fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.inputs.iter().enumerate() {
            writeln!(
                f,
                "input {i}: max error {:.3e} at [{}] (analytic {:.12e}, numeric {:.12e}; {} coords)",
                r.max_error, r.index, r.analytic, r.numeric, r.checked
            )?;
        }
        write!(
            f,
            "tolerance {:.1e}: {}",
            self.tolerance,
            if self.passed() { "passed" } else { "FAILED" }
        )
    }
}

/// Checks the gradients of `f` with respect to every tensor in `inputs` (converted to `f64`)
/// against central differences. Returns the report; use [`GradcheckReport::passed`].
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: &GradcheckOptions,
) -> Result<GradcheckReport> {
    let base: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_vec_f64()).collect();
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let make = |values: &[Vec<f64>], grad: bool| -> Result<Vec<Tensor>> {
        values
            .iter()
            .zip(&shapes)
            .map(|(v, s)| {
                let t = Tensor::from_vec(v.clone(), s)?;
                Ok(if grad { t.requiring_grad() } else { t })
            })
            .collect()
    };

    // The projection R, fixed by the seed and the output shape.
    let probe = no_grad(|| f(&make(&base, false)?))?;
    let noise_floor = |objective_value: f64| 1e-3 * objective_value.abs().max(1.0);
    if probe.dtype() != DType::F64 {
        return Err(Error::invalid(
            "gradcheck: the function must compute in f64 for f64 inputs",
        ));
    }
    let mut rng = Philox::new(opts.seed);
    let projection = Tensor::uniform(probe.shape(), -1.0, 1.0, DType::F64, &mut rng);
    let objective = |xs: &[Tensor]| -> Result<Tensor> { project(&f(xs)?, &projection) };

    let leaves = make(&base, true)?;
    objective(&leaves)?.backward()?;
    let analytic: Vec<Vec<f64>> = leaves
        .iter()
        .map(|t| {
            t.grad()
                .map(|g| g.to_vec_f64())
                .unwrap_or_else(|| vec![0.0; t.numel()])
        })
        .collect();

    let eval = |values: &[Vec<f64>]| -> Result<f64> {
        no_grad(|| objective(&make(values, false)?)?.item())
    };
    let floor = noise_floor(eval(&base)?);
    let mut reports = Vec::new();
    for (i, x) in base.iter().enumerate() {
        let coords: Vec<usize> = if x.len() <= opts.max_coords {
            (0..x.len()).collect()
        } else {
            let mut all: Vec<usize> = (0..x.len()).collect();
            rng.shuffle(&mut all);
            all.truncate(opts.max_coords);
            all
        };
        let mut numeric = Vec::with_capacity(coords.len());
        let mut values = base.clone();
        for &c in &coords {
            let orig = values[i][c];
            values[i][c] = orig + opts.eps;
            let plus = eval(&values)?;
            values[i][c] = orig - opts.eps;
            let minus = eval(&values)?;
            values[i][c] = orig;
            numeric.push((plus - minus) / (2.0 * opts.eps));
        }
        let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut worst = InputReport {
            max_error: 0.0,
            index: coords.first().copied().unwrap_or(0),
            analytic: 0.0,
            numeric: 0.0,
            checked: coords.len(),
        };
        for (&c, &n) in coords.iter().zip(&numeric) {
            let a = analytic[i][c];
            let err = (a - n).abs() / n.abs().max(1e-2 * scale).max(floor);
            if err > worst.max_error || !err.is_finite() {
                worst = InputReport {
                    max_error: if err.is_finite() { err } else { f64::INFINITY },
                    index: c,
                    analytic: a,
                    numeric: n,
                    checked: coords.len(),
                };
            }
        }
        reports.push(worst);
    }
    Ok(GradcheckReport {
        inputs: reports,
        tolerance: opts.tolerance,
    })
}

/// Checks the gradients of a scalar `loss` with respect to parameters it reads (leaves that
/// require grad, e.g. a module's [`named_parameters`](crate::nn::Module::named_parameters)),
/// perturbing each sampled coordinate in place. `loss` must be deterministic (a fresh
/// generator per call when dropout is on). Parameters must be contiguous `f64` tensors.
/// Returns one report entry per parameter, in order.
pub fn gradcheck_params(
    loss: impl Fn() -> Result<Tensor>,
    params: &[(String, Tensor)],
    opts: &GradcheckOptions,
) -> Result<GradcheckReport> {
    for (name, p) in params {
        if p.dtype() != DType::F64 || !p.is_contiguous() || !p.requires_grad() {
            return Err(Error::invalid(format!(
                "gradcheck_params: {name} must be a contiguous f64 leaf that requires grad"
            )));
        }
        p.zero_grad();
    }
    let l0 = loss()?;
    let floor = 1e-3 * l0.item()?.abs().max(1.0);
    l0.backward()?;
    let eval = || -> Result<f64> { no_grad(|| loss()?.item()) };
    let mut rng = Philox::new(opts.seed);
    let mut reports = Vec::with_capacity(params.len());
    for (_, p) in params {
        let analytic = p
            .grad()
            .map(|g| g.to_vec_f64())
            .unwrap_or_else(|| vec![0.0; p.numel()]);
        let n = p.numel();
        let coords: Vec<usize> = if n <= opts.max_coords {
            (0..n).collect()
        } else {
            let mut all: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut all);
            all.truncate(opts.max_coords);
            all
        };
        let mut numeric = Vec::with_capacity(coords.len());
        for &c in &coords {
            let set = |v: f64| p.with_data_mut::<f64, _>(|d| d[c] = v);
            let orig = p.with_data::<f64, _>(|d| d[c])?;
            set(orig + opts.eps)?;
            let plus = eval()?;
            set(orig - opts.eps)?;
            let minus = eval()?;
            set(orig)?;
            numeric.push((plus - minus) / (2.0 * opts.eps));
        }
        let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut worst = InputReport {
            max_error: 0.0,
            index: coords.first().copied().unwrap_or(0),
            analytic: 0.0,
            numeric: 0.0,
            checked: coords.len(),
        };
        for (&c, &num) in coords.iter().zip(&numeric) {
            let a = analytic[c];
            let err = (a - num).abs() / num.abs().max(1e-2 * scale).max(floor);
            if err > worst.max_error || !err.is_finite() {
                worst = InputReport {
                    max_error: if err.is_finite() { err } else { f64::INFINITY },
                    index: c,
                    analytic: a,
                    numeric: num,
                    checked: coords.len(),
                };
            }
        }
        reports.push(worst);
        p.zero_grad();
    }
    Ok(GradcheckReport {
        inputs: reports,
        tolerance: opts.tolerance,
    })
}

/// `Σ out ⊙ r` as its own op, so that scaling the backward of `mul` or `sum_all` in the
/// self-test does not also scale the checker's own projection.
fn project(out: &Tensor, r: &Tensor) -> Result<Tensor> {
    let value = no_grad(|| out.mul(r)?.sum_all())?;
    let (r, shape) = (r.clone(), out.shape().to_vec());
    Ok(value
        .detach()
        .record("gradcheck_projection", &[out], move |g| {
            Ok(vec![Some(r.mul(&g.broadcast_to(&shape)?)?)])
        }))
}

/// The standard check of one op, used by every op's tests:
/// 1. `f`'s gradients in `f64` pass [`gradcheck`] with the default tolerance (1e-6);
/// 2. with the backward of the op named `op` scaled by 1.001, the same check fails (so the check
///    really exercises that op's backward);
/// 3. `f` in `f32` agrees with `f64` in value and gradient to `f32` accuracy.
///
/// Panics with the report on failure (it is a test helper).
#[doc(hidden)]
pub fn check_op(op: &'static str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let opts = GradcheckOptions::default();
    let report =
        gradcheck(&f, inputs, &opts).unwrap_or_else(|e| panic!("{op}: gradcheck errored: {e}"));
    assert!(report.passed(), "{op}: gradient check failed\n{report}");
    let scaled = crate::autograd::with_backward_scaled(op, 1.001, || gradcheck(&f, inputs, &opts))
        .unwrap_or_else(|e| panic!("{op}: scaled gradcheck errored: {e}"));
    assert!(
        !scaled.passed(),
        "{op}: the check did not notice a backward scaled by 1.001; it does not test this op\n{scaled}"
    );
    check_f32_against_f64(op, &f, inputs);
}

/// Runs `f` in `f32` and `f64` and compares outputs and input gradients.
fn check_f32_against_f64(op: &str, f: &impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let run = |dtype: DType| -> (Vec<f64>, Vec<Vec<f64>>) {
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.to_dtype(dtype).unwrap().detach().requiring_grad())
            .collect();
        let out = f(&xs).unwrap();
        assert_eq!(out.dtype(), dtype, "{op}: output dtype");
        let mut rng = Philox::new(7);
        let r = Tensor::uniform(out.shape(), -1.0, 1.0, dtype, &mut rng);
        project(&out, &r).unwrap().backward().unwrap();
        let grads = xs
            .iter()
            .map(|x| x.grad().map(|g| g.to_vec_f64()).unwrap_or_default())
            .collect();
        (out.to_vec_f64(), grads)
    };
    let (o64, g64) = run(DType::F64);
    let (o32, g32) = run(DType::F32);
    // f32 has a 6e-8 unit roundoff; ops chain a few roundings, and reductions of ~100 terms
    // add a few more: 1e-4 relative to the tensor's scale leaves ample margin while still
    // catching any f32 kernel that computes something different.
    let close = |a: &[f64], b: &[f64], what: &str| {
        let scale = b.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * scale + 1e-4 * y.abs(),
                "{op}: f32 {what} differs from f64 at {i}: {x} vs {y}"
            );
        }
    };
    close(&o32, &o64, "output");
    for (k, (a, b)) in g32.iter().zip(&g64).enumerate() {
        close(a, b, &format!("gradient of input {k}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_passes_a_correct_gradient_and_reports_it() {
        let x = Tensor::from_vec(vec![0.3f64, -1.2, 2.0], &[3]).unwrap();
        let r = gradcheck(|xs| xs[0].mul(&xs[0]), &[x], &GradcheckOptions::default()).unwrap();
        assert!(r.passed(), "{r}");
        assert_eq!(r.inputs[0].checked, 3);
    }

    #[test]
    fn checker_samples_large_inputs() {
        let mut rng = Philox::new(1);
        let x = Tensor::randn(&[1000], DType::F64, &mut rng);
        let r = gradcheck(|xs| xs[0].exp(), &[x], &GradcheckOptions::default()).unwrap();
        assert_eq!(r.inputs[0].checked, 200);
        assert!(r.passed(), "{r}");
    }
}
