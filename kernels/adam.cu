// adam.cu — one Adam step with AoANet's element-wise gradient clamp fused in (AOANET.md 2.4),
// the same arithmetic as the CPU's `train::adam` (which follows torch.optim.Adam), line by line:
//
//   g = clamp(grad, -clip, clip)            (if use_clip; NaN passes through, like clamp_)
//   g += weight_decay * param               (if use_wd)
//   m = lerp(m, g, w)                       torch's lerp: m + w (g - m) for w < 0.5,
//                                           else g - (g - m)(1 - w);  w = 1 - beta1
//   v = v beta2 + (1 - beta2) g g
//   param += neg_step_size * m / (sqrt(v) / bc2_sqrt + eps)
// with neg_step_size = -lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t) computed on the
// host in f64 and rounded to T, as the CPU does.
//
// Kernels (wrapper: src/cuda/kernels/adam.rs; tests: tests/cuda_adam.rs):
//   adam_{f32,f64}   one step over n parameters; the gradient buffer is read, not modified.

#include "common.cuh"

template <typename T>
__device__ __forceinline__ void adam_impl(T* param, T* m, T* v, const T* grad, i64 n, T lerp_weight,
                                          int lerp_small, T beta2, T one_minus_beta2,
                                          T neg_step_size, T bc2_sqrt, T eps, T weight_decay,
                                          int use_wd, T clip, int use_clip) {
    GRID_STRIDE(i, n) {
        T g = grad[i];
        if (use_clip) {
            if (g > clip) g = clip;
            else if (g < -clip) g = -clip;
        }
        const T p = param[i];
        if (use_wd) g += weight_decay * p;
        const T mo = m[i];
        const T mi = lerp_small ? mo + lerp_weight * (g - mo) : g - (g - mo) * ((T)1 - lerp_weight);
        const T vi = v[i] * beta2 + one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        const T denom = x_sqrt(vi) / bc2_sqrt + eps;
        param[i] = p + neg_step_size * mi / denom;
    }
}

extern "C" __global__ void adam_f32(float* param, float* m, float* v, const float* grad, i64 n,
                                    float lerp_weight, int lerp_small, float beta2,
                                    float one_minus_beta2, float neg_step_size, float bc2_sqrt,
                                    float eps, float weight_decay, int use_wd, float clip,
                                    int use_clip) {
    adam_impl(param, m, v, grad, n, lerp_weight, lerp_small, beta2, one_minus_beta2, neg_step_size,
              bc2_sqrt, eps, weight_decay, use_wd, clip, use_clip);
}
extern "C" __global__ void adam_f64(double* param, double* m, double* v, const double* grad, i64 n,
                                    double lerp_weight, int lerp_small, double beta2,
                                    double one_minus_beta2, double neg_step_size, double bc2_sqrt,
                                    double eps, double weight_decay, int use_wd, double clip,
                                    int use_clip) {
    adam_impl(param, m, v, grad, n, lerp_weight, lerp_small, beta2, one_minus_beta2, neg_step_size,
              bc2_sqrt, eps, weight_decay, use_wd, clip, use_clip);
}
