//! Every differentiable op: forward, backward, and tests together, one file per family.
