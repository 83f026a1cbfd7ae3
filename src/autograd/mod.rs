//! The tape: records ops, runs the backward pass, holds gradients; the `no_grad` scope.
