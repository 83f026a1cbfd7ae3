//! `Tensor`: shape, strides, dtype, device, storage; creation and cheap views.
