// lstm.cu — the fused LSTM cell (PyTorch's LSTMCell: gate order i, f, g, o; both biases).
//
//   pre = gx + gh + b_ih + b_hh,  gx = x W_ih^T and gh = h_prev W_hh^T from two GEMMs
//   i = sigma(pre[0:H]), f = sigma(pre[H:2H]), g = tanh(pre[2H:3H]), o = sigma(pre[3H:4H])
//   c = f * c_prev + i * g;  h = o * tanh(c)
//
// Backward (per element; dh, dc the incoming gradients of h and c, either may be null = 0):
//   tc = tanh(c);  dc_tot = dc + dh * o * (1 - tc^2)
//   d pre_i = dc_tot * g * i (1 - i);      d pre_f = dc_tot * c_prev * f (1 - f)
//   d pre_g = dc_tot * i * (1 - g^2);      d pre_o = dh * tc * o (1 - o)
//   dc_prev = dc_tot * f
// d pre is the gradient of gx, gh and both biases alike: the wrapper's caller feeds it to the
// GEMMs for dx, dh_prev, dW_ih, dW_hh and to a column sum for the biases.
//
// Kernels (wrappers: src/cuda/kernels/lstm.rs; tests: tests/cuda_lstm.rs):
//   lstm_cell_fwd_f32   h, c [B, H]; gates [B, 4H] = the activated (i, f, g, o), saved for
//                       backward (may be null); c_prev, b_ih, b_hh may be null (zeros)
//   lstm_cell_bwd_f32   dgates [B, 4H] (pre-activation, overwritten), dc_prev [B, H] (may be
//                       null); c is recomputed from gates and c_prev, exactly as the forward did
// One thread per (b, j), j < H; grid-stride, 64-bit indices.

#include "common.cuh"

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

extern "C" __global__ void lstm_cell_fwd_f32(float* h, float* c, float* gates, const float* gx,
                                             const float* gh, const float* b_ih,
                                             const float* b_hh, const float* c_prev, i64 batch,
                                             int hidden) {
    const i64 n = batch * hidden;
    for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < n; t += (i64)gridDim.x * blockDim.x) {
        const i64 b = t / hidden;
        const int j = (int)(t % hidden);
        float pre[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const int k = q * hidden + j;
            const i64 idx = b * 4 * hidden + k;
            pre[q] = gx[idx] + gh[idx] + (b_ih ? b_ih[k] : 0.0f) + (b_hh ? b_hh[k] : 0.0f);
        }
        const float ig = sigmoidf(pre[0]), fg = sigmoidf(pre[1]), gg = tanhf(pre[2]),
                    og = sigmoidf(pre[3]);
        const float cp = c_prev ? c_prev[t] : 0.0f;
        const float cn = fg * cp + ig * gg;
        c[t] = cn;
        h[t] = og * tanhf(cn);
        if (gates) {
            const i64 base = b * 4 * hidden + j;
            gates[base] = ig;
            gates[base + hidden] = fg;
            gates[base + 2 * hidden] = gg;
            gates[base + 3 * hidden] = og;
        }
    }
}

extern "C" __global__ void lstm_cell_bwd_f32(float* dgates, float* dc_prev, const float* dh,
                                             const float* dc, const float* gates,
                                             const float* c_prev, i64 batch, int hidden) {
    const i64 n = batch * hidden;
    for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < n; t += (i64)gridDim.x * blockDim.x) {
        const i64 b = t / hidden;
        const int j = (int)(t % hidden);
        const i64 base = b * 4 * hidden + j;
        const float ig = gates[base], fg = gates[base + hidden], gg = gates[base + 2 * hidden],
                    og = gates[base + 3 * hidden];
        const float cp = c_prev ? c_prev[t] : 0.0f;
        const float cn = fg * cp + ig * gg;  // the forward's c, recomputed
        const float tc = tanhf(cn);
        const float gh_ = dh ? dh[t] : 0.0f;
        const float dct = (dc ? dc[t] : 0.0f) + gh_ * og * (1.0f - tc * tc);
        dgates[base] = dct * gg * ig * (1.0f - ig);
        dgates[base + hidden] = dct * cp * fg * (1.0f - fg);
        dgates[base + 2 * hidden] = dct * ig * (1.0f - gg * gg);
        dgates[base + 3 * hidden] = gh_ * tc * og * (1.0f - og);
        if (dc_prev) dc_prev[t] = dct * fg;
    }
}
