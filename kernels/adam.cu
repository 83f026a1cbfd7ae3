// adam.cu — one Adam step with AoANet's element-wise gradient clamp fused in (AOANET.md 2.4).
//
// Kernel (wrapper: src/cuda/kernels/adam.rs; test: tests/cuda_adam.rs):
//   adam_f32   g = clamp(grad, -clip, clip) (clip <= 0: no clamp); g += weight_decay * param
//              m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//              param -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
//   with step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t) computed on the host
//   in f64 (PyTorch's Adam: denom = sqrt(v) / sqrt(bc2) + eps, p -= lr / bc1 * m / denom).
// The gradient buffer is read, not modified.

#include "common.cuh"

extern "C" __global__ void adam_f32(float* param, float* m, float* v, const float* grad, i64 n,
                                    float step_size, float beta1, float beta2, float eps,
                                    float inv_sqrt_bc2, float clip, float weight_decay) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float g = grad[i];
        if (clip > 0.0f) g = fminf(fmaxf(g, -clip), clip);
        const float p = param[i];
        g += weight_decay * p;
        const float mi = beta1 * m[i] + (1.0f - beta1) * g;
        const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = p - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}
