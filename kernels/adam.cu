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
//   adam_{f32,f64}        one step over n parameters; the gradient buffer is read, not modified.
//   adam_multi_{f32,f64}  one step over many parameter tensors in one launch (the reference
//                         model has 79: one launch each was 79 per training step, most of
//                         them over a few thousand elements). A table of ADAM_SLOT u64 words
//                         per tensor: param, m, v, grad (device addresses), n, its first block,
//                         and the bits of its neg_step_size and bc2_sqrt as doubles (per tensor:
//                         step counts may differ), rounded to T here as the host rounds them for
//                         adam_*. Block b updates ADAM_CHUNK elements of the tensor whose first
//                         block is the largest one <= b (a binary search of the table). The
//                         element update is the same function as adam_*'s, so both give the
//                         same bits.

#include "common.cuh"

// One element's update (see the header); `grad` is read, `param`, `m`, `v` are written.
template <typename T>
__device__ __forceinline__ void adam_element(T* param, T* m, T* v, const T* grad, i64 i,
                                             T lerp_weight, int lerp_small, T beta2,
                                             T one_minus_beta2, T neg_step_size, T bc2_sqrt, T eps,
                                             T weight_decay, int use_wd, T clip, int use_clip) {
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

template <typename T>
__device__ __forceinline__ void adam_impl(T* param, T* m, T* v, const T* grad, i64 n, T lerp_weight,
                                          int lerp_small, T beta2, T one_minus_beta2,
                                          T neg_step_size, T bc2_sqrt, T eps, T weight_decay,
                                          int use_wd, T clip, int use_clip) {
    GRID_STRIDE(i, n) {
        adam_element(param, m, v, grad, i, lerp_weight, lerp_small, beta2, one_minus_beta2,
                     neg_step_size, bc2_sqrt, eps, weight_decay, use_wd, clip, use_clip);
    }
}

#define ADAM_SLOT 8
#define ADAM_CHUNK 8192

template <typename T>
__device__ __forceinline__ void adam_multi_impl(const u64* table, int count, T lerp_weight,
                                                int lerp_small, T beta2, T one_minus_beta2, T eps,
                                                T weight_decay, int use_wd, T clip, int use_clip) {
    const i64 block = blockIdx.x;
    const u64* s = table + (i64)multi_tensor_slot(table, count, ADAM_SLOT, 5, block) * ADAM_SLOT;
    T* param = (T*)s[0];
    T* m = (T*)s[1];
    T* v = (T*)s[2];
    const T* grad = (const T*)s[3];
    const i64 n = (i64)s[4];
    const i64 start = (block - (i64)s[5]) * ADAM_CHUNK;
    const i64 end = start + ADAM_CHUNK < n ? start + ADAM_CHUNK : n;
    const T neg_step_size = (T)__longlong_as_double((long long)s[6]);
    const T bc2_sqrt = (T)__longlong_as_double((long long)s[7]);
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x)
        adam_element(param, m, v, grad, i, lerp_weight, lerp_small, beta2, one_minus_beta2,
                     neg_step_size, bc2_sqrt, eps, weight_decay, use_wd, clip, use_clip);
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
extern "C" __global__ void adam_multi_f32(const u64* table, int count, float lerp_weight,
                                          int lerp_small, float beta2, float one_minus_beta2,
                                          float eps, float weight_decay, int use_wd, float clip,
                                          int use_clip) {
    adam_multi_impl(table, count, lerp_weight, lerp_small, beta2, one_minus_beta2, eps,
                    weight_decay, use_wd, clip, use_clip);
}
extern "C" __global__ void adam_multi_f64(const u64* table, int count, double lerp_weight,
                                          int lerp_small, double beta2, double one_minus_beta2,
                                          double eps, double weight_decay, int use_wd,
                                          double clip, int use_clip) {
    adam_multi_impl(table, count, lerp_weight, lerp_small, beta2, one_minus_beta2, eps,
                    weight_decay, use_wd, clip, use_clip);
}
