//! Neural-network modules with the reference's PyTorch parameter names.
//!
//! A module owns its parameters as leaf tensors that collect gradients, initialised as
//! PyTorch 1.0 initialises them (the reference sets no custom init, AOANET.md 1.10), and lists
//! them under their `state_dict` keys through [`Module::visit`], so a reference checkpoint
//! converted to safetensors loads by name.
//!
//! Forward passes take a [`Ctx`]: training or evaluation mode, and the Philox stream that
//! dropout draws from.

mod attention;
mod layers;

pub use attention::{
    AttentionMask, DropoutOrder, KeyValues, MultiHeadAoa, MultiHeadAoaConfig,
    fused_attention_enabled, set_fused_attention,
};
pub use layers::{Dropout, Embedding, FeedForward, LayerNorm, Linear, LstmCell};

use crate::rng::Philox;
use crate::tensor::Tensor;

/// The mode and randomness of one forward pass.
pub struct Ctx<'a> {
    /// Training mode: dropout active.
    pub train: bool,
    /// The stream dropout masks are drawn from.
    pub rng: &'a mut Philox,
    /// Return the attention probabilities (the decoder's attention maps). The fused attention
    /// kernels never form them, so with this set they are computed beside it (no graph).
    pub attention_maps: bool,
}

impl<'a> Ctx<'a> {
    /// Training mode drawing from `rng`.
    pub fn train(rng: &'a mut Philox) -> Self {
        Ctx {
            train: true,
            rng,
            attention_maps: false,
        }
    }

    /// Evaluation mode (dropout is the identity; `rng` is not drawn from).
    pub fn eval(rng: &'a mut Philox) -> Self {
        Ctx {
            train: false,
            rng,
            attention_maps: false,
        }
    }

    /// The same context, returning attention maps when `yes`.
    pub fn with_attention_maps(mut self, yes: bool) -> Self {
        self.attention_maps = yes;
        self
    }
}

/// Something with named parameters.
pub trait Module {
    /// Calls `f(name, parameter)` for every parameter, names prefixed by `prefix` (which is
    /// empty or ends with a dot), in a fixed order.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor));

    /// All parameters with their full names, in visiting order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |name, t| out.push((name, t.clone())));
        out
    }

    /// Total number of parameter elements.
    fn num_parameters(&self) -> usize {
        let mut n = 0;
        self.visit("", &mut |_, t| n += t.numel());
        n
    }

    /// Moves every parameter's storage to `device`, in place
    /// ([`Tensor::move_to_device_`]): the parameters stay the same leaves, so optimisers and
    /// name lists made before still refer to them. Stops at the first error.
    fn to_device_(&self, device: crate::tensor::Device) -> crate::Result<()> {
        let mut result = Ok(());
        self.visit("", &mut |_, t| {
            if result.is_ok() {
                result = t.move_to_device_(device);
            }
        });
        result
    }
}

/// Joins a prefix and a name with a dot.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}
