//! Adam exactly as `torch.optim.Adam` (single-tensor CPU path) with the reference's
//! element-wise gradient clamp (AOANET.md 2.4), as one fused loop per parameter.
//!
//! Per element, with `g` the gradient clamped to `[−clip, clip]` (the reference's
//! `clip_gradient`, `grad.clamp_(−0.1, 0.1)`, applied before the step) and `t` the parameter's
//! step count after incrementing:
//!
//! ```text
//! g  ← g + weight_decay·p                    (if weight_decay ≠ 0; 0 in AoANet)
//! m  ← lerp(m, g, 1 − β1)                    torch: exp_avg.lerp_(grad, 1 − β1)
//! v  ← v·β2 + (1 − β2)·g·g                   torch: exp_avg_sq.mul_(β2).addcmul_(grad, grad, 1 − β2)
//! step_size = lr / (1 − β1^t)
//! denom     = sqrt(v) / sqrt(1 − β2^t) + eps
//! p  ← p − step_size·m / denom               torch: param.addcdiv_(exp_avg, denom, −step_size)
//! ```
//!
//! The scalars are computed in `f64` as Python computes them (`β^t` with `powf`, like Python's
//! `**`) and cast to the parameter's type, as PyTorch casts scalar operands; the element-wise
//! operations keep PyTorch's order of evaluation. As in PyTorch, each parameter has its own step
//! count and state, created at its first step, and a parameter without a gradient is skipped.
//! The clamp does not modify the gradient tensor itself (it may be shared).

use crate::cpu::parallel::{chunk_count, chunk_range, num_threads};
use crate::io::{IntTensor, SafeTensors, Writer};
use crate::tensor::{DType, Float, Tensor};
use crate::{Error, Result, with_float};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// Adam's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// β₁, the first moment's decay.
    pub beta1: f64,
    /// β₂, the second moment's decay.
    pub beta2: f64,
    /// ε, added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient (`torch.optim.Adam`'s `weight_decay`).
    pub weight_decay: f64,
    /// Element-wise clamp of the gradient to `[−c, c]` before the step, if any.
    pub grad_clip: Option<f64>,
}

impl Default for AdamConfig {
    /// AoANet's XE stage: lr 2e-4, betas (0.9, 0.999), eps 1e-8, no weight decay, clamp 0.1.
    fn default() -> Self {
        AdamConfig {
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: Some(0.1),
        }
    }
}

impl AdamConfig {
    fn validate(&self) -> Result<()> {
        let ok = self.lr >= 0.0
            && self.lr.is_finite()
            && (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps >= 0.0
            && self.weight_decay >= 0.0
            && self.grad_clip.is_none_or(|c| c >= 0.0);
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "Adam: invalid settings {self:?} (need lr ≥ 0, betas in [0, 1), eps, weight \
                 decay and clip ≥ 0)"
            )))
        }
    }
}

/// One parameter's optimiser state.
#[derive(Clone, Debug)]
pub struct AdamParamState {
    /// The parameter's name.
    pub name: String,
    /// Steps taken on this parameter.
    pub step: u64,
    /// First moment (`exp_avg`), shaped and typed like the parameter.
    pub exp_avg: Tensor,
    /// Second moment (`exp_avg_sq`).
    pub exp_avg_sq: Tensor,
}

/// The whole optimiser state, by parameter name (for checkpoints).
#[derive(Clone, Debug, Default)]
pub struct AdamState {
    /// One entry per parameter that has taken a step, sorted by name.
    pub params: Vec<AdamParamState>,
}

/// `torch.optim.Adam` with the reference's gradient clamp. See the module documentation.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    state: BTreeMap<String, AdamParamState>,
}

/// The per-step scalars, cast to the parameter type.
#[derive(Clone, Copy)]
struct Scalars<T> {
    lerp_weight: T,
    lerp_small: bool,
    beta2: T,
    one_minus_beta2: T,
    neg_step_size: T,
    bc2_sqrt: T,
    eps: T,
    weight_decay: Option<T>,
    clip: Option<T>,
}

/// Elements per thread below which the update runs on one thread.
const MIN_CHUNK: usize = 1 << 15;

impl Adam {
    /// An optimiser with `config` and no state.
    pub fn new(config: AdamConfig) -> Result<Adam> {
        config.validate()?;
        Ok(Adam {
            config,
            state: BTreeMap::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate (schedules call this between steps).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        let mut c = self.config;
        c.lr = lr;
        c.validate()?;
        self.config = c;
        Ok(())
    }

    /// Steps taken on the parameter `name` (`None` before its first).
    pub fn step_count(&self, name: &str) -> Option<u64> {
        self.state.get(name).map(|s| s.step)
    }

    /// One step over `params` (name, leaf tensor), reading each one's accumulated gradient.
    /// Parameters without a gradient are skipped. Everything is checked before anything is
    /// updated: on error no parameter or state has changed.
    pub fn step<S: AsRef<str>>(&mut self, params: &[(S, Tensor)]) -> Result<()> {
        let mut names = HashSet::new();
        let mut work = Vec::new();
        for (name, p) in params {
            let name = name.as_ref();
            if !names.insert(name) {
                return Err(Error::invalid(format!(
                    "Adam: parameter {name:?} is listed twice"
                )));
            }
            let Some(g) = p.grad() else { continue };
            self.check(name, p, &g)?;
            work.push((name, p, g));
        }
        #[cfg(feature = "cuda")]
        let mut on_device = Vec::new();
        for (name, p, g) in work {
            let state = self
                .state
                .entry(name.to_string())
                .or_insert_with(|| AdamParamState {
                    name: name.to_string(),
                    step: 0,
                    exp_avg: p.zeros_like(),
                    exp_avg_sq: p.zeros_like(),
                });
            state.step += 1;
            #[cfg(feature = "cuda")]
            if p.is_cuda() && multi_tensor_launches() {
                // Moments restored from a host checkpoint follow their parameter.
                for moment in [&state.exp_avg, &state.exp_avg_sq] {
                    moment.move_to_device_(p.device())?;
                }
                on_device.push((p.clone(), state.clone(), g));
                continue;
            }
            update(&self.config, state, p, &g)?;
        }
        #[cfg(feature = "cuda")]
        update_on_devices(&self.config, &on_device)?;
        Ok(())
    }

    fn check(&self, name: &str, p: &Tensor, g: &Tensor) -> Result<()> {
        let problem = if !p.dtype().is_compute() {
            Some(format!("is {}, not f32 or f64", p.dtype()))
        } else if p.layout().contiguous_range().is_none() {
            Some("is not contiguous".to_string())
        } else if g.shape() != p.shape() || g.dtype() != p.dtype() {
            Some(format!(
                "is {} {:?} but its gradient is {} {:?}",
                p.dtype(),
                p.shape(),
                g.dtype(),
                g.shape()
            ))
        } else if let Some(s) = self.state.get(name) {
            let bad = |t: &Tensor| {
                t.shape() != p.shape()
                    || t.dtype() != p.dtype()
                    || t.layout().contiguous_range().is_none()
            };
            (bad(&s.exp_avg) || bad(&s.exp_avg_sq)).then(|| {
                format!(
                    "is {} {:?} but its optimiser state is {} {:?}",
                    p.dtype(),
                    p.shape(),
                    s.exp_avg.dtype(),
                    s.exp_avg.shape()
                )
            })
        } else {
            None
        };
        match problem {
            Some(msg) => Err(Error::invalid(format!("Adam: parameter {name:?} {msg}"))),
            None => Ok(()),
        }
    }

    /// The state of every parameter that has taken a step, by name. The tensors share storage
    /// with the optimiser: write them (e.g. with [`AdamState::add_to`]) before the next step.
    pub fn state(&self) -> AdamState {
        AdamState {
            params: self.state.values().cloned().collect(),
        }
    }

    /// Replaces the whole state (from a checkpoint). Each entry's moments must have equal
    /// shapes and a compute dtype, and its step count must be at least 1; whether they fit
    /// the parameters is checked at the next [`Adam::step`].
    pub fn load_state(&mut self, state: AdamState) -> Result<()> {
        let mut map = BTreeMap::new();
        for s in state.params {
            if s.step == 0
                || s.exp_avg.shape() != s.exp_avg_sq.shape()
                || s.exp_avg.dtype() != s.exp_avg_sq.dtype()
                || !s.exp_avg.dtype().is_compute()
            {
                return Err(Error::invalid(format!(
                    "Adam: state of {:?} is inconsistent (step {}, exp_avg {} {:?}, exp_avg_sq \
                     {} {:?})",
                    s.name,
                    s.step,
                    s.exp_avg.dtype(),
                    s.exp_avg.shape(),
                    s.exp_avg_sq.dtype(),
                    s.exp_avg_sq.shape()
                )));
            }
            // Own, dense copies: the optimiser writes them in place.
            let own = |t: &Tensor| -> Result<Tensor> {
                let c = t.detach().contiguous()?;
                Ok(if c.same_storage(t) {
                    Tensor::from_vec(c.to_vec_f64(), c.shape())?.to_dtype(c.dtype())?
                } else {
                    c
                })
            };
            let entry = AdamParamState {
                name: s.name.clone(),
                step: s.step,
                exp_avg: own(&s.exp_avg)?,
                exp_avg_sq: own(&s.exp_avg_sq)?,
            };
            if map.insert(s.name.clone(), entry).is_some() {
                return Err(Error::invalid(format!(
                    "Adam: state names {:?} twice",
                    s.name
                )));
            }
        }
        self.state = map;
        Ok(())
    }
}

/// Whether parameters on a GPU are updated in one launch per device and dtype
/// ([`crate::cuda::ops::adam_update_many`]): on unless `AOANET_CUDA_ADAM_PER_TENSOR` was set
/// when first asked, or [`set_multi_tensor_launches`] turned it off.
#[cfg(feature = "cuda")]
fn multi_tensor_switch() -> &'static std::sync::atomic::AtomicBool {
    static SWITCH: std::sync::OnceLock<std::sync::atomic::AtomicBool> = std::sync::OnceLock::new();
    SWITCH.get_or_init(|| {
        std::sync::atomic::AtomicBool::new(
            std::env::var_os("AOANET_CUDA_ADAM_PER_TENSOR").is_none(),
        )
    })
}

#[cfg(feature = "cuda")]
fn multi_tensor_launches() -> bool {
    multi_tensor_switch().load(std::sync::atomic::Ordering::Relaxed)
}

/// Updates GPU parameters with one launch per device and dtype (`true`, the default) or one
/// launch per parameter (the baseline the `gpu_model` bench compares with). Both compute the
/// same bits.
#[cfg(feature = "cuda")]
pub fn set_multi_tensor_launches(on: bool) {
    multi_tensor_switch().store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The settings of one device update at step count `step`.
#[cfg(feature = "cuda")]
fn device_hyper(config: &AdamConfig, step: u64) -> crate::cuda::ops::AdamHyper {
    crate::cuda::ops::AdamHyper {
        lr: config.lr,
        beta1: config.beta1,
        beta2: config.beta2,
        eps: config.eps,
        weight_decay: config.weight_decay,
        grad_clip: config.grad_clip,
        step,
    }
}

/// The step of every `(parameter, state after incrementing, gradient)` on a GPU: one launch
/// per device and dtype (the reference model's 79 parameters: one launch instead of 79), or one per
/// parameter where two parameters share storage (each storage is updated once per launch).
#[cfg(feature = "cuda")]
fn update_on_devices(
    config: &AdamConfig,
    params: &[(Tensor, AdamParamState, Tensor)],
) -> Result<()> {
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, (p, _, _)) in params.iter().enumerate() {
        let key = (p.device().to_string(), p.dtype().to_string());
        groups.entry(key).or_default().push(i);
    }
    for members in groups.values() {
        let mut storages = HashSet::new();
        let distinct = members
            .iter()
            .all(|&i| storages.insert(params[i].0.storage_key().0));
        if !distinct {
            for &i in members {
                let (p, s, g) = &params[i];
                update(config, s, p, g)?;
            }
            continue;
        }
        let items: Vec<crate::cuda::ops::AdamItem<'_>> = members
            .iter()
            .map(|&i| {
                let (p, s, g) = &params[i];
                crate::cuda::ops::AdamItem {
                    p,
                    m: &s.exp_avg,
                    v: &s.exp_avg_sq,
                    g,
                    step: s.step,
                }
            })
            .collect();
        crate::cuda::ops::adam_update_many(&items, device_hyper(config, 0))?;
    }
    Ok(())
}

/// Clears the gradients of all `params` (before the next backward).
pub fn zero_grad<S>(params: &[(S, Tensor)]) {
    for (_, p) in params {
        p.zero_grad();
    }
}

fn update(config: &AdamConfig, s: &AdamParamState, p: &Tensor, g: &Tensor) -> Result<()> {
    #[cfg(feature = "cuda")]
    if p.is_cuda() {
        // The fused kernel of the same arithmetic; moments restored from a host checkpoint
        // follow their parameter to the device.
        for moment in [&s.exp_avg, &s.exp_avg_sq] {
            moment.move_to_device_(p.device())?;
        }
        let h = device_hyper(config, s.step);
        return crate::cuda::ops::adam_update(p, &s.exp_avg, &s.exp_avg_sq, g, h);
    }
    let t = s.step as f64;
    let bias_correction1 = 1.0 - config.beta1.powf(t);
    let bias_correction2 = 1.0 - config.beta2.powf(t);
    let step_size = config.lr / bias_correction1;
    let lerp_weight = 1.0 - config.beta1;
    with_float!(p.dtype(), "Adam", T => {
        let k = Scalars::<T> {
            lerp_weight: T::from_f64(lerp_weight),
            // PyTorch's lerp picks its formula by the weight's size, for accuracy.
            lerp_small: lerp_weight.abs() < 0.5,
            beta2: T::from_f64(config.beta2),
            one_minus_beta2: T::from_f64(1.0 - config.beta2),
            neg_step_size: T::from_f64(-step_size),
            bc2_sqrt: T::from_f64(bias_correction2.sqrt()),
            eps: T::from_f64(config.eps),
            weight_decay: (config.weight_decay != 0.0).then(|| T::from_f64(config.weight_decay)),
            clip: config.grad_clip.map(T::from_f64),
        };
        p.with_data_mut::<T, _>(|pv| {
            s.exp_avg.with_data_mut::<T, _>(|m| {
                s.exp_avg_sq.with_data_mut::<T, _>(|v| {
                    g.with_data::<T, _>(|gv| parallel_update(pv, m, v, gv, &k))
                })
            })
        })???
    })
}

/// Splits the four equal-length slices into balanced chunks and updates them in parallel.
fn parallel_update<T: Float>(p: &mut [T], m: &mut [T], v: &mut [T], g: &[T], k: &Scalars<T>) {
    let n = p.len();
    let parts = chunk_count(n, MIN_CHUNK, num_threads());
    if parts <= 1 {
        adam_kernel(p, m, v, g, k);
        return;
    }
    std::thread::scope(|scope| {
        let (mut p, mut m, mut v, mut g) = (p, m, v, g);
        for i in 0..parts {
            let len = chunk_range(n, parts, i).len();
            let (pc, pr) = p.split_at_mut(len);
            let (mc, mr) = m.split_at_mut(len);
            let (vc, vr) = v.split_at_mut(len);
            let (gc, gr) = g.split_at(len);
            (p, m, v, g) = (pr, mr, vr, gr);
            if i + 1 == parts {
                adam_kernel(pc, mc, vc, gc, k);
            } else {
                scope.spawn(move || adam_kernel(pc, mc, vc, gc, k));
            }
        }
    });
}

/// The fused update of one chunk; see the module documentation for each line's PyTorch
/// counterpart.
fn adam_kernel<T: Float>(p: &mut [T], m: &mut [T], v: &mut [T], g: &[T], k: &Scalars<T>) {
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let mut g = match k.clip {
            // clamp_, which keeps NaN (so a broken gradient still shows as NaN).
            Some(c) if g > c => c,
            Some(c) if g < -c => -c,
            _ => g,
        };
        if let Some(wd) = k.weight_decay {
            g += wd * *p;
        }
        *m = if k.lerp_small {
            *m + k.lerp_weight * (g - *m)
        } else {
            g - (g - *m) * (T::ONE - k.lerp_weight)
        };
        *v = *v * k.beta2 + k.one_minus_beta2 * g * g;
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *p += k.neg_step_size * *m / denom;
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------

impl AdamState {
    /// Adds the state to a safetensors file under `prefix`: `{prefix}exp_avg.{name}`,
    /// `{prefix}exp_avg_sq.{name}` (in the moments' dtype) and `{prefix}step.{name}` (an `I64`
    /// scalar).
    pub fn add_to(&self, w: &mut Writer, prefix: &str) -> Result<()> {
        for s in &self.params {
            w.add(format!("{prefix}exp_avg.{}", s.name), &s.exp_avg)?;
            w.add(format!("{prefix}exp_avg_sq.{}", s.name), &s.exp_avg_sq)?;
            let step = i64::try_from(s.step)
                .map_err(|_| Error::invalid(format!("Adam: step {} too large", s.step)))?;
            w.add_int(
                format!("{prefix}step.{}", s.name),
                IntTensor::new(&[], vec![step])?,
            )?;
        }
        Ok(())
    }

    /// Reads the state written by [`AdamState::add_to`] for `params` (name, parameter),
    /// converting the moments to each parameter's dtype. Strict: a parameter with only part of
    /// its state, moments of the wrong shape, or tensors under `prefix` that belong to no
    /// parameter are all listed in one error. A parameter with no state at all has not taken
    /// a step yet and gets none.
    pub fn read<S: AsRef<str>>(
        file: &SafeTensors,
        prefix: &str,
        params: &[(S, Tensor)],
    ) -> Result<AdamState> {
        let mut problems = Vec::new();
        let mut known = HashSet::new();
        let mut out = Vec::new();
        for (name, p) in params {
            let name = name.as_ref();
            let keys = ["exp_avg", "exp_avg_sq", "step"].map(|k| format!("{prefix}{k}.{name}"));
            let present: Vec<bool> = keys.iter().map(|k| file.info(k).is_some()).collect();
            known.extend(keys.iter().cloned());
            if present.iter().all(|&x| !x) {
                continue;
            }
            if present.iter().any(|&x| !x) {
                problems.push(format!("{name}: only part of its state is present"));
                continue;
            }
            let mut bad_shape = false;
            for k in &keys[..2] {
                let info = file.info(k).expect("present");
                if info.shape != p.shape() || info.dtype.float().is_none() {
                    problems.push(format!(
                        "{k} is {} {:?}, the parameter is {:?}",
                        info.dtype,
                        info.shape,
                        p.shape()
                    ));
                    bad_shape = true;
                }
            }
            let step = file.int_tensor(&keys[2]);
            let step = match step.as_ref().map(|t| (t.data.len(), t.data.first())) {
                Ok((1, Some(&s))) if s >= 1 => s as u64,
                _ => {
                    problems.push(format!("{}: not a step count ≥ 1", keys[2]));
                    continue;
                }
            };
            if bad_shape {
                continue;
            }
            let dtype = if p.dtype().is_compute() {
                p.dtype()
            } else {
                DType::F32
            };
            out.push(AdamParamState {
                name: name.to_string(),
                step,
                exp_avg: file.tensor_as(&keys[0], dtype)?,
                exp_avg_sq: file.tensor_as(&keys[1], dtype)?,
            });
        }
        let extra: Vec<&str> = file
            .names_with_prefix(prefix)
            .into_iter()
            .filter(|n| !known.contains(*n))
            .collect();
        if !extra.is_empty() {
            problems.push(format!(
                "tensors that belong to no parameter: {}",
                extra.join(", ")
            ));
        }
        if problems.is_empty() {
            out.sort_by(|a, b| a.name.cmp(&b.name));
            return Ok(AdamState { params: out });
        }
        let mut msg = format!("the optimiser state under {prefix:?} does not match the model:");
        for p in problems {
            let _ = write!(msg, "\n  {p}");
        }
        Err(Error::format(file.path(), msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;

    /// Adam in its textbook form (bias-corrected moments), in f64, for one scalar, with the
    /// clamp and weight decay of the reference.
    fn by_hand(p0: f64, grads: &[f64], c: &AdamConfig) -> f64 {
        let (mut p, mut m, mut v) = (p0, 0.0f64, 0.0f64);
        for (i, &g) in grads.iter().enumerate() {
            let t = (i + 1) as i32;
            let g = c.grad_clip.map_or(g, |clip| g.clamp(-clip, clip)) + c.weight_decay * p;
            m = c.beta1 * m + (1.0 - c.beta1) * g;
            v = c.beta2 * v + (1.0 - c.beta2) * g * g;
            let m_hat = m / (1.0 - c.beta1.powi(t));
            let v_hat = v / (1.0 - c.beta2.powi(t));
            p -= c.lr * m_hat / (v_hat.sqrt() + c.eps);
        }
        p
    }

    fn leaf(v: Vec<f64>) -> Tensor {
        let n = v.len();
        Tensor::from_vec(v, &[n]).unwrap().requiring_grad()
    }

    fn run(config: AdamConfig, p0: &[f64], grads: &[Vec<f64>], dtype: DType) -> Vec<f64> {
        let p = leaf(p0.to_vec())
            .to_dtype(dtype)
            .unwrap()
            .detach()
            .requiring_grad();
        let mut adam = Adam::new(config).unwrap();
        for g in grads {
            p.set_grad(Some(
                Tensor::from_vec(g.clone(), &[g.len()])
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            ));
            adam.step(&[("w", p.clone())]).unwrap();
        }
        assert_eq!(adam.step_count("w"), Some(grads.len() as u64));
        p.to_vec_f64()
    }

    #[test]
    fn steps_match_a_hand_computation() {
        let p0 = [0.5, -1.25, 2.0, 0.0, 3.0];
        // Over the clamp both ways, inside it, exactly zero, and sign changes across steps.
        let grads = vec![
            vec![0.5, -0.03, 0.07, 0.0, -7.0],
            vec![-0.2, -0.01, 0.09, 1e-9, 0.05],
            vec![0.04, 0.3, -0.1, 0.0, 0.02],
        ];
        for config in [
            AdamConfig {
                lr: 1e-2,
                ..AdamConfig::default()
            },
            AdamConfig {
                lr: 3e-3,
                grad_clip: None,
                weight_decay: 0.1,
                beta1: 0.8,
                ..AdamConfig::default()
            },
        ] {
            let got = run(config, &p0, &grads, DType::F64);
            for (i, &x) in got.iter().enumerate() {
                let g: Vec<f64> = grads.iter().map(|g| g[i]).collect();
                let want = by_hand(p0[i], &g, &config);
                assert!((x - want).abs() < 1e-15, "{i}: {x} vs {want}");
            }
            let f32_run = run(config, &p0, &grads, DType::F32);
            for (a, b) in f32_run.iter().zip(&got) {
                assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
        // The first step moves each coordinate by lr against its gradient's sign (Adam's
        // scale invariance), zero gradients excepted.
        let one = run(
            AdamConfig {
                lr: 1e-2,
                ..Default::default()
            },
            &p0,
            &grads[..1],
            DType::F64,
        );
        for ((&a, &b), &g) in one.iter().zip(&p0).zip(&grads[0]) {
            let moved = if g == 0.0 { 0.0 } else { -1e-2 * g.signum() };
            assert!((a - b - moved).abs() < 1e-8, "{a} {b} {g}");
        }
    }

    #[test]
    fn the_parallel_update_equals_one_thread_bit_for_bit() {
        let n = 4 * MIN_CHUNK + 123;
        let mut rng = Philox::new(11);
        let p = Tensor::randn(&[n], DType::F32, &mut rng).requiring_grad();
        let p0 = p.to_vec_f32();
        let g = Tensor::randn(&[n], DType::F32, &mut rng)
            .mul_scalar(0.2)
            .unwrap();
        p.set_grad(Some(g.clone()));
        let config = AdamConfig::default();
        let mut adam = Adam::new(config).unwrap();
        adam.step(&[("w", p.clone())]).unwrap();
        // The same update on one thread.
        let (mut q, mut m, mut v) = (p0, vec![0.0f32; n], vec![0.0f32; n]);
        let k = Scalars::<f32> {
            lerp_weight: (1.0 - 0.9f64) as f32,
            lerp_small: true,
            beta2: 0.999,
            one_minus_beta2: (1.0 - 0.999f64) as f32,
            neg_step_size: (-2e-4 / (1.0 - 0.9f64)) as f32,
            bc2_sqrt: (1.0 - 0.999f64).sqrt() as f32,
            eps: 1e-8,
            weight_decay: None,
            clip: Some(0.1),
        };
        adam_kernel(&mut q, &mut m, &mut v, &g.to_vec_f32(), &k);
        assert_eq!(p.to_vec_f32(), q);
        assert_eq!(adam.state().params[0].exp_avg_sq.to_vec_f32(), v);
    }

    #[test]
    fn parameters_without_gradient_are_skipped_and_errors_change_nothing() {
        let a = leaf(vec![1.0, 2.0]);
        let b = leaf(vec![3.0]);
        let mut adam = Adam::new(AdamConfig::default()).unwrap();
        a.set_grad(Some(Tensor::ones(&[2], DType::F64)));
        adam.step(&[("a", a.clone()), ("b", b.clone())]).unwrap();
        assert_eq!(adam.step_count("a"), Some(1));
        assert_eq!(adam.step_count("b"), None);
        assert_eq!(b.to_vec_f64(), vec![3.0]);
        // b's gradient has the wrong dtype: a must not move either.
        let before = a.to_vec_f64();
        b.set_grad(Some(Tensor::ones(&[1], DType::F32)));
        let e = adam
            .step(&[("a", a.clone()), ("b", b.clone())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"b\"") && e.contains("gradient"), "{e}");
        assert_eq!(a.to_vec_f64(), before);
        assert_eq!(adam.step_count("a"), Some(1));
        assert!(adam.step(&[("a", a.clone()), ("a", a.clone())]).is_err());
        assert!(adam.set_lr(-1.0).is_err());
        adam.set_lr(5e-5).unwrap();
        assert_eq!(adam.lr(), 5e-5);
        assert!(
            Adam::new(AdamConfig {
                beta2: 1.0,
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn state_saved_and_restored_continues_bit_identically() {
        let mut rng = Philox::new(4);
        let params = |rng: &mut Philox| {
            vec![
                (
                    "x.weight".to_string(),
                    Tensor::randn(&[3, 2], DType::F32, rng).requiring_grad(),
                ),
                (
                    "x.bias".to_string(),
                    Tensor::randn(&[3], DType::F32, rng).requiring_grad(),
                ),
                (
                    "unused".to_string(),
                    Tensor::randn(&[2], DType::F32, rng).requiring_grad(),
                ),
            ]
        };
        let a = params(&mut rng);
        // A second model: its weights come from the checkpoint below.
        let b: Vec<(String, Tensor)> = a
            .iter()
            .map(|(n, t)| (n.clone(), t.zeros_like().requiring_grad()))
            .collect();
        let grads: Vec<Vec<Tensor>> = (0..3)
            .map(|_| {
                a[..2]
                    .iter()
                    .map(|(_, t)| Tensor::randn(t.shape(), DType::F32, &mut rng))
                    .collect()
            })
            .collect();
        let set = |ps: &[(String, Tensor)], gs: &[Tensor]| {
            for ((_, p), g) in ps.iter().zip(gs) {
                p.set_grad(Some(g.clone()));
            }
        };
        let mut opt_a = Adam::new(AdamConfig::default()).unwrap();
        for g in &grads[..2] {
            set(&a, g);
            opt_a.step(&a).unwrap();
        }
        // Checkpoint: weights and state through a safetensors file.
        let mut w = Writer::new();
        w.add_all("", &a, None).unwrap();
        opt_a.state().add_to(&mut w, "optim.").unwrap();
        let file = SafeTensors::from_bytes(w.to_bytes().unwrap(), "ckpt").unwrap();
        file.load_into("", &b, crate::io::Unexpected::Ignore)
            .unwrap();
        let mut opt_b = Adam::new(AdamConfig::default()).unwrap();
        let state = AdamState::read(&file, "optim.", &b).unwrap();
        assert_eq!(
            state.params.len(),
            2,
            "no state for the parameter that never stepped"
        );
        opt_b.load_state(state).unwrap();
        assert_eq!(opt_b.step_count("x.bias"), Some(2));
        set(&a, &grads[2]);
        set(&b, &grads[2]);
        opt_a.step(&a).unwrap();
        opt_b.step(&b).unwrap();
        for ((n, x), (_, y)) in a.iter().zip(&b) {
            assert_eq!(x.to_vec_f32(), y.to_vec_f32(), "{n}");
        }

        // Strictness: partial state and foreign tensors are named.
        let mut w = Writer::new();
        opt_a.state().add_to(&mut w, "optim.").unwrap();
        w.add("optim.exp_avg.ghost", &Tensor::zeros(&[1], DType::F32))
            .unwrap();
        let file = SafeTensors::from_bytes(w.to_bytes().unwrap(), "bad").unwrap();
        let e = AdamState::read(&file, "optim.", &b[..1])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("optim.exp_avg.ghost") && e.contains("optim.step.x.bias"),
            "{e}"
        );
        let mut w = Writer::new();
        w.add("optim.exp_avg.x.bias", &Tensor::zeros(&[3], DType::F32))
            .unwrap();
        let file = SafeTensors::from_bytes(w.to_bytes().unwrap(), "partial").unwrap();
        let e = AdamState::read(&file, "optim.", &b)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.bias: only part of its state"), "{e}");
        // A state of the wrong shape is refused at the next step, before anything changes.
        let mut wrong = opt_b.state();
        wrong.params[0].exp_avg = Tensor::zeros(&[7], DType::F32);
        wrong.params[0].exp_avg_sq = Tensor::zeros(&[7], DType::F32);
        opt_b.load_state(wrong).unwrap();
        let e = opt_b.step(&b).unwrap_err().to_string();
        assert!(e.contains("optimiser state"), "{e}");
    }
}
