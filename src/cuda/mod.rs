//! The CUDA backend: device detection, NVRTC compilation of `kernels/*.cu`, launches.
