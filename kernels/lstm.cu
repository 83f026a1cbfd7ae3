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
// Kernels (wrappers: src/cuda/kernels/lstm.rs; tests: tests/cuda_lstm.rs, and through the tensor
// op in tests/cuda_ops.rs), each in f32 and f64:
//   lstm_cell_fwd_*   h, c [B, H] (row stride ld_out: the tensor op writes both into one
//                     [2, B, H] result, two dense blocks, so ld_out = H; rows [h ; c] of a
//                     [B, 2H] buffer would take ld_out = 2H);
//                     gates [B, 4H] = the activated (i, f, g, o), saved for backward (may be
//                     null); c_prev (row stride ld_cp), b_ih, b_hh may be null (zeros)
//   lstm_cell_bwd_*   dgates [B, 4H] (pre-activation, overwritten), dc_prev [B, H] (contiguous,
//                     may be null) from dh, dc (row strides ld_dh, ld_dc; either may be null);
//                     c is recomputed from gates and c_prev, exactly as the forward did
// One thread per (b, j), j < H; grid-stride, 64-bit indices.

#include "common.cuh"

template <typename T>
__device__ __forceinline__ void lstm_cell_fwd_impl(T* h, T* c, T* gates, const T* gx, const T* gh,
                                                   const T* b_ih, const T* b_hh, const T* c_prev,
                                                   i64 batch, int hidden, i64 ld_out, i64 ld_cp) {
    const i64 n = batch * hidden;
    GRID_STRIDE(t, n) {
        const i64 b = t / hidden;
        const int j = (int)(t % hidden);
        T pre[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const int k = q * hidden + j;
            const i64 idx = b * 4 * hidden + k;
            pre[q] = gx[idx] + gh[idx] + (b_ih ? b_ih[k] : (T)0) + (b_hh ? b_hh[k] : (T)0);
        }
        const T ig = x_sigmoid(pre[0]), fg = x_sigmoid(pre[1]), gg = x_tanh(pre[2]),
                og = x_sigmoid(pre[3]);
        const T cp = c_prev ? c_prev[b * ld_cp + j] : (T)0;
        const T cn = fg * cp + ig * gg;
        c[b * ld_out + j] = cn;
        h[b * ld_out + j] = og * x_tanh(cn);
        if (gates) {
            const i64 base = b * 4 * hidden + j;
            gates[base] = ig;
            gates[base + hidden] = fg;
            gates[base + 2 * hidden] = gg;
            gates[base + 3 * hidden] = og;
        }
    }
}

extern "C" __global__ void lstm_cell_fwd_f32(float* h, float* c, float* gates, const float* gx,
                                             const float* gh, const float* b_ih,
                                             const float* b_hh, const float* c_prev, i64 batch,
                                             int hidden, i64 ld_out, i64 ld_cp) {
    lstm_cell_fwd_impl(h, c, gates, gx, gh, b_ih, b_hh, c_prev, batch, hidden, ld_out, ld_cp);
}
extern "C" __global__ void lstm_cell_fwd_f64(double* h, double* c, double* gates, const double* gx,
                                             const double* gh, const double* b_ih,
                                             const double* b_hh, const double* c_prev, i64 batch,
                                             int hidden, i64 ld_out, i64 ld_cp) {
    lstm_cell_fwd_impl(h, c, gates, gx, gh, b_ih, b_hh, c_prev, batch, hidden, ld_out, ld_cp);
}

template <typename T>
__device__ __forceinline__ void lstm_cell_bwd_impl(T* dgates, T* dc_prev, const T* dh, const T* dc,
                                                   const T* gates, const T* c_prev, i64 batch,
                                                   int hidden, i64 ld_dh, i64 ld_dc, i64 ld_cp) {
    const i64 n = batch * hidden;
    GRID_STRIDE(t, n) {
        const i64 b = t / hidden;
        const int j = (int)(t % hidden);
        const i64 base = b * 4 * hidden + j;
        const T ig = gates[base], fg = gates[base + hidden], gg = gates[base + 2 * hidden],
                og = gates[base + 3 * hidden];
        const T cp = c_prev ? c_prev[b * ld_cp + j] : (T)0;
        const T cn = fg * cp + ig * gg;  // the forward's c, recomputed
        const T tc = x_tanh(cn);
        const T gh_ = dh ? dh[b * ld_dh + j] : (T)0;
        const T dct = (dc ? dc[b * ld_dc + j] : (T)0) + gh_ * og * ((T)1 - tc * tc);
        dgates[base] = dct * gg * ig * ((T)1 - ig);
        dgates[base + hidden] = dct * cp * fg * ((T)1 - fg);
        dgates[base + 2 * hidden] = dct * ig * ((T)1 - gg * gg);
        dgates[base + 3 * hidden] = gh_ * tc * og * ((T)1 - og);
        if (dc_prev) dc_prev[t] = dct * fg;
    }
}

extern "C" __global__ void lstm_cell_bwd_f32(float* dgates, float* dc_prev, const float* dh,
                                             const float* dc, const float* gates,
                                             const float* c_prev, i64 batch, int hidden,
                                             i64 ld_dh, i64 ld_dc, i64 ld_cp) {
    lstm_cell_bwd_impl(dgates, dc_prev, dh, dc, gates, c_prev, batch, hidden, ld_dh, ld_dc, ld_cp);
}
extern "C" __global__ void lstm_cell_bwd_f64(double* dgates, double* dc_prev, const double* dh,
                                             const double* dc, const double* gates,
                                             const double* c_prev, i64 batch, int hidden,
                                             i64 ld_dh, i64 ld_dc, i64 ld_cp) {
    lstm_cell_bwd_impl(dgates, dc_prev, dh, dc, gates, c_prev, batch, hidden, ld_dh, ld_dc, ld_cp);
}
