//! Reverse-mode automatic differentiation: a graph of closures, walked backwards.
//!
//! Every op result made while gradients are enabled, from an input that requires grad, holds a
//! [`Node`]: its inputs and a closure that maps the gradient of the result to the gradients of
//! the inputs. [`Tensor::backward`] orders the graph topologically and runs the closures from
//! the root down.
//!
//! Gradient accumulation rule: activation gradients are summed in a map local to one backward
//! pass (a tensor used twice receives the sum) and dropped as soon as they have been passed
//! on; leaf gradients (parameters) are added with `+=` into the leaf, across backward calls,
//! until [`Tensor::zero_grad`]. Each node's closure is taken out of the graph as it runs, so
//! the saved activations are freed during the pass, and a second backward over the same graph
//! is an error, not a silent double count.

mod grad;
pub mod gradcheck;

pub use grad::Grad;
use grad::Pending;
pub(crate) use grad::accumulate;

use crate::tensor::{Tensor, TensorId};
use crate::{Error, Result};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// The backward closure of one op: gradient of the output → gradient of each input (`None`
/// for inputs that receive none, e.g. masks), possibly in a deferred form ([`Grad`]).
pub type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Grad>>> + Send>;

/// How a tensor was computed.
pub struct Node {
    /// The op's name, e.g. `matmul` (shown in errors; keys the gradient-checker self-test).
    pub name: &'static str,
    /// The op's tensor inputs, in the order the closure returns their gradients.
    pub inputs: Vec<Tensor>,
    /// The backward closure.
    pub backward: BackwardFn,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    static BACKWARD_SCALE: RefCell<Option<(&'static str, f64)>> = const { RefCell::new(None) };
}

/// Whether ops currently record the graph on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` without recording any graph (decoding, evaluation, optimiser updates, backward
/// itself). Restores the previous mode afterwards, also on early return.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

/// Test hook for the gradient checker's self-test: while `f` runs, the backward of every op
/// named `op` has its input gradients multiplied by `factor`. A correct checker must notice a
/// factor of 1.001.
#[doc(hidden)]
pub fn with_backward_scaled<R>(op: &'static str, factor: f64, f: impl FnOnce() -> R) -> R {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            BACKWARD_SCALE.with(|s| *s.borrow_mut() = None);
        }
    }
    BACKWARD_SCALE.with(|s| *s.borrow_mut() = Some((op, factor)));
    let _restore = Restore;
    f()
}

impl Tensor {
    /// Attaches the op `name` with `inputs` and `backward` to this freshly made result, if
    /// gradients are enabled and any input requires them; otherwise returns it unchanged.
    pub(crate) fn record(
        self,
        name: &'static str,
        inputs: &[&Tensor],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + 'static,
    ) -> Tensor {
        self.record_grads(name, inputs, move |g| {
            Ok(backward(g)?
                .into_iter()
                .map(|t| t.map(Grad::Dense))
                .collect())
        })
    }

    /// As [`Tensor::record`], for a backward that may return deferred gradients.
    pub(crate) fn record_grads(
        self,
        name: &'static str,
        inputs: &[&Tensor],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Grad>>> + Send + 'static,
    ) -> Tensor {
        if !is_grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
            return self;
        }
        let inner = &self.0;
        let node = Node {
            name,
            inputs: inputs.iter().map(|&t| t.clone()).collect(),
            backward: Box::new(backward),
        };
        Tensor(std::sync::Arc::new(crate::tensor::Inner {
            id: inner.id,
            storage: inner.storage.clone(),
            layout: inner.layout.clone(),
            dtype: inner.dtype,
            requires_grad: true,
            is_leaf: false,
            node: std::sync::Mutex::new(Some(node)),
            grad: std::sync::Mutex::new(None),
        }))
    }

    fn node_inputs(&self) -> Vec<Tensor> {
        let node = self.0.node.lock().unwrap_or_else(|e| e.into_inner());
        node.as_ref().map(|n| n.inputs.clone()).unwrap_or_default()
    }

    fn take_node(&self) -> Option<Node> {
        self.0.node.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn is_leaf(&self) -> bool {
        self.0.is_leaf
    }

    /// Back-propagates from this one-element tensor (seed gradient 1), adding the gradients
    /// of all leaves that require grad into them. Frees the graph as it goes.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "backward",
                &[self.shape()],
                "a one-element (scalar) tensor",
            ));
        }
        let seed = Tensor::ones_on(self.shape(), self.dtype(), self.device())?;
        self.backward_with(seed)
    }

    /// Back-propagates `grad` (shaped like this tensor) from this tensor.
    pub fn backward_with(&self, grad: Tensor) -> Result<()> {
        if !self.requires_grad() {
            return Err(Error::invalid(
                "backward: the tensor does not require grad (no parameter reaches it, or it was computed under no_grad)",
            ));
        }
        if grad.shape() != self.shape() {
            return Err(Error::shape(
                "backward",
                &[self.shape(), grad.shape()],
                "a gradient shaped like the tensor",
            ));
        }
        if grad.device() != self.device() {
            return Err(Error::Mismatch {
                op: "backward",
                detail: format!(
                    "the tensor is on {} but its gradient on {}",
                    self.device(),
                    grad.device()
                ),
            });
        }
        no_grad(|| grad::with_stack_cache(|| run_backward(self, grad)))
    }
}

/// The ops recorded in the graph behind `root`, by name, each node once: what a backward pass
/// from `root` would run. For fusion work: on a GPU every entry is at least one kernel launch
/// forward and one backward (views such as `reshape` or `narrow` are recorded too but launch
/// nothing when their input is dense). Empty for a tensor without a graph.
pub fn op_census(root: &Tensor) -> std::collections::BTreeMap<&'static str, usize> {
    let mut census = std::collections::BTreeMap::new();
    if !root.requires_grad() {
        return census;
    }
    for t in topological_order(root) {
        let node = t.0.node.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = node.as_ref() {
            *census.entry(n.name).or_insert(0) += 1;
        }
    }
    census
}

/// Hashes a [`TensorId`] (a counter, unique per tensor record) with one multiplication: the
/// backward pass looks ids up several times per node, and SipHash's resistance to chosen keys
/// buys nothing for ids we hand out ourselves.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, x: u64) {
        // Fibonacci hashing: consecutive ids spread over the high bits the table uses.
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by tensor identity.
type IdMap<V> = HashMap<TensorId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Tensors reachable from `root` through nodes, each after all tensors that use it.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    // Iterative post-order DFS: decoder graphs are thousands of nodes deep.
    let mut order = Vec::new();
    let mut visited: IdMap<()> = IdMap::default();
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if visited.insert(t.id(), ()).is_some() {
            continue;
        }
        let inputs = t.node_inputs();
        stack.push((t, true));
        for input in inputs {
            if input.requires_grad() && !visited.contains_key(&input.id()) {
                stack.push((input, false));
            }
        }
    }
    order.reverse();
    order
}

fn run_backward(root: &Tensor, seed: Tensor) -> Result<()> {
    let order = topological_order(root);
    let mut grads: IdMap<Pending> = IdMap::default();
    let mut seed_pending = Pending::default();
    seed_pending.add(Grad::Dense(seed))?;
    grads.insert(root.id(), seed_pending);
    for t in order {
        let Some(pending) = grads.remove(&t.id()) else {
            // No gradient reached this tensor; still free its node.
            drop(t.take_node());
            continue;
        };
        // Every consumer of `t` has run: form its gradient (one GEMM for deferred pieces).
        let g = pending.finish()?;
        if t.is_leaf() {
            let mut slot = t.0.grad.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(match slot.take() {
                Some(old) => accumulate(old, &g)?,
                None => g.contiguous()?,
            });
            continue;
        }
        let Some(node) = t.take_node() else {
            return Err(Error::invalid(
                "backward: this graph was already consumed by an earlier backward",
            ));
        };
        let name = node.name;
        let input_grads = (node.backward)(&g)?;
        drop(g);
        let scale = BACKWARD_SCALE
            .with(|s| *s.borrow())
            .filter(|(op, _)| *op == name)
            .map(|(_, f)| f);
        for (input, ig) in node.inputs.iter().zip(input_grads) {
            let Some(mut ig) = ig else { continue };
            if !input.requires_grad() {
                continue;
            }
            if ig.shape() != input.shape() {
                return Err(Error::shape(
                    name,
                    &[input.shape(), &ig.shape()],
                    "backward to return a gradient shaped like its input (a bug in the op)",
                ));
            }
            if let Some(f) = scale {
                ig = ig.scaled(f)?;
            }
            // Deferred products wait only for leaves (a non-leaf's op needs a dense tensor);
            // windows wait for any tensor, to be joined once when its op runs.
            if !input.is_leaf() && !matches!(ig, Grad::Dense(_) | Grad::Window { .. }) {
                ig = Grad::Dense(ig.into_dense()?);
            }
            grads.entry(input.id()).or_default().add(ig)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    /// Each recorded op counted once, shared sub-graphs included; leaves and no-grad results
    /// count nothing.
    #[test]
    fn op_census_counts_each_node_once() {
        let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])
            .unwrap()
            .requiring_grad();
        let c = Tensor::from_vec(vec![5.0f64, 6.0], &[2]).unwrap();
        let e = x.exp().unwrap();
        let y = e.mul(&e).unwrap().add(&e.mul(&c).unwrap()).unwrap();
        let loss = y.sum_all().unwrap();
        let census = op_census(&loss);
        let want: std::collections::BTreeMap<&str, usize> =
            [("exp", 1), ("mul", 2), ("add", 1), ("sum_all", 1)]
                .into_iter()
                .collect();
        assert_eq!(census, want);
        assert!(op_census(&x).is_empty());
        assert!(op_census(&no_grad(|| x.exp().unwrap())).is_empty());
    }

    #[test]
    fn gradients_accumulate_into_leaves_across_calls() {
        let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])
            .unwrap()
            .requiring_grad();
        for _ in 0..2 {
            let y = x.mul(&x).unwrap().sum_all().unwrap();
            y.backward().unwrap();
        }
        assert_eq!(x.grad().unwrap().to_vec_f64(), vec![4.0, 8.0]);
        x.zero_grad();
        assert!(x.grad().is_none());
    }

    #[test]
    fn a_tensor_used_twice_gets_the_sum() {
        let x = Tensor::from_vec(vec![3.0f64], &[1])
            .unwrap()
            .requiring_grad();
        let y = x.add(&x).unwrap().mul(&x).unwrap().sum_all().unwrap(); // 2x²
        y.backward().unwrap();
        assert_eq!(x.grad().unwrap().to_vec_f64(), vec![12.0]);
    }

    #[test]
    fn no_grad_records_nothing_and_restores() {
        let x = Tensor::ones(&[2], DType::F64).requiring_grad();
        let y = no_grad(|| x.mul_scalar(2.0).unwrap());
        assert!(!y.requires_grad());
        assert!(is_grad_enabled());
        assert!(y.sum_all().unwrap().backward().is_err());
    }

    #[test]
    fn graph_is_freed_and_second_backward_fails() {
        let x = Tensor::ones(&[2], DType::F64).requiring_grad();
        let y = x.exp().unwrap().sum_all().unwrap();
        y.backward().unwrap();
        assert!(y.backward().is_err());
    }

    #[test]
    fn backward_needs_a_scalar() {
        let x = Tensor::ones(&[2], DType::F64).requiring_grad();
        let e = x.exp().unwrap().backward().unwrap_err().to_string();
        assert!(e.contains("[2]"), "{e}");
    }
}
