//! Kernel benches (GPU only): placeholder filled in below.
fn main() {}
