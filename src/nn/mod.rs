//! Neural-network modules with the reference's PyTorch parameter names.
