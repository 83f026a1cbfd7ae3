// attention.cu — fused multi-head scaled dot-product attention, forward and backward, without
// writing the Nq x Nk scores to global memory (AOANET.md 1.5, 1.6):
//
//   S = (Q_h K_h^T) / sqrt(dh);  S[:, j] = -1e9 where key_mask[b, j] == 0   (masked_fill: the
//   masked score is REPLACED, not added to);  P = softmax_j(S);  P' = dropout(P);  O_h = P' V_h
//
// One kernel serves the refiner (Nq = Nk = N, 8 heads, dh = 128) and the decoder (Nq = 1
// query against N keys, K and V read in place from the two halves of p_att_feats through
// their strides). Element (b, i, h, d) of Q is at q[b*q_bs + i*q_rs + h*dh + d]; same for K, V,
// O (and dQ, dK, dV, dO, which share the layouts of Q, K, V, O).
//
// Dropout on P: element (b, h, i, j) of the [B, H, Nq, Nk] probability tensor, row-major index
// idx, uses Philox word offset + idx (common.cuh: dropout_keep) — the same mask as dropout_f32
// applied to a materialised P, so the unfused composition gives the same result. With
// drop_qmajor != 0, idx is instead the element's index in the [B, Nq, H, Nk] permutation: the
// decoder's captions of one image are its Nq queries, and this numbers each caption's
// probabilities as the reference's one-query-per-caption layout [B * Nq, H, 1, Nk] does (the
// two orders agree when Nq = 1).
//
// Forward (online softmax, one warp per two query rows, 32-key tiles of K and V in shared memory):
// lane j of a warp scores key j0 + j; the running max m, the running sum l of exp(s - m)
// (undropped) and the output accumulator (each lane owns dims lane + 32 t) are rescaled by
// exp(m_old - m_new) whenever the max grows; the dropped probability p' of key jj is broadcast
// with a shuffle. O = acc / l; lse = m + log l is saved for backward.
//
// Backward (P recomputed from Q, K and lse; z = the dropout factor 0 or 1/(1-p)):
//   dP'_ij = dO_i . V_j; dP_ij = z_ij dP'_ij; D_i = sum_j P_ij dP_ij = dO_i . O_i
//   dS_ij = P_ij (dP_ij - D_i) (0 for masked j: the score does not depend on Q or K there)
//   dQ_i = scale sum_j dS_ij K_j;  dK_j = scale sum_i dS_ij Q_i;  dV_j = sum_i z_ij P_ij dO_i
// attn_bwd_dq_f32 (warp per query row) also writes D = delta [B, H, Nq]; attn_bwd_dkdv_f32
// (warp per key, 32-query tiles of Q and dO in shared memory) runs after it and reads delta.
// Every output is written (not accumulated) exactly once: deterministic, no atomics.
//
// Kernels (wrappers: src/cuda/kernels/attention.rs; tests: tests/cuda_attention.rs):
//   attn_fwd_f32, attn_bwd_dq_f32, attn_bwd_dkdv_f32
//   attn_decode_fwd_f32: the forward for one query (the decoder), see its comment
// Limits: dh a multiple of 32, at most 128; blockDim = 32 x warps, warps <= 8.
// Grid: (ceil(rows / warps), H, B) where rows = Nq (dq) or Nk (dkdv); the forward takes
// (ceil(Nq / (2 warps)), H, B).

#include "common.cuh"

#define AT_TILE 32
#define AT_MAXD 128
#define AT_MAXW 8
#define AT_MASKED (-1e9f)

__device__ __forceinline__ float drop_factor(float p_drop, float keep_scale, u64 seed, u64 stream,
                                             u64 offset, i64 idx) {
    if (p_drop <= 0.0f) return 1.0f;
    return dropout_keep(philox_word(seed, stream, offset + (u64)idx), p_drop) ? keep_scale : 0.0f;
}

// The Philox index of probability (b, h, i, j): head-major ([B, H, Nq, Nk] row-major) or, with
// qmajor, query-major ([B, Nq, H, Nk] row-major); see the header.
__device__ __forceinline__ i64 drop_index(int qmajor, int b, int h, int i, int j, int H, int Nq,
                                          int Nk) {
    const i64 r = qmajor ? ((i64)b * Nq + i) * H + h : ((i64)b * H + h) * Nq + i;
    return r * Nk + j;
}

// Rows r0 .. r0 + AT_TILE - 1 of two [rows, dh] operands into shared memory, zeros from row n
// on: element (r, d) of A is a[a_off + r * a_rs + d], scaled by sa, into As[r - r0][d]; B
// likewise, unscaled. Each thread loads eight elements of each operand before it stores any,
// so sixteen loads are in flight at once: one load then one store at a time waited for memory
// once per element. The decoder's attention forward (5 queries per image against 36 regions:
// two tiles per block and little else) took 41 us per launch that way on the H200 and 24 us
// this way on the H100 (the kernel clock, `CudaDevice::time_kernels`).
template <int LDA, int LDB>
__device__ __forceinline__ void stage_rows(float (*As)[LDA], float (*Bs)[LDB], const float* a,
                                           i64 a_off, i64 a_rs, float sa, const float* b,
                                           i64 b_off, i64 b_rs, int r0, int n, int dh) {
    const int total = AT_TILE * dh;
    for (int e0 = threadIdx.x; e0 < total; e0 += 8 * blockDim.x) {
        float ra[8], rb[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int e = e0 + u * blockDim.x, rr = e / dh, d = e - rr * dh, r = r0 + rr;
            const bool in = e < total && r < n;
            ra[u] = in ? a[a_off + (i64)r * a_rs + d] * sa : 0.0f;
            rb[u] = in ? b[b_off + (i64)r * b_rs + d] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int e = e0 + u * blockDim.x;
            if (e < total) {
                const int rr = e / dh, d = e - rr * dh;
                As[rr][d] = ra[u];
                Bs[rr][d] = rb[u];
            }
        }
    }
}

// Two query rows per warp (rows i0 + w and i0 + nw + w of the block's 2 * nw): each K element
// read from shared memory serves two dot products and each V element two accumulators, and a
// block's K/V tiles (loaded once per block) serve 16 queries instead of 8. With one row per
// warp the refiner's forward measured 1.97-2.00x its unfused composition on the H100.
extern "C" __global__ void __launch_bounds__(256) attn_fwd_f32(
    float* out, float* lse, const float* q, const float* k, const float* v, const u8* mask, int B,
    int H, int Nq, int Nk, int dh, i64 q_bs, i64 q_rs, i64 k_bs, i64 k_rs, i64 v_bs, i64 v_rs,
    i64 o_bs, i64 o_rs, float scale, float p_drop, u64 seed, u64 stream, u64 offset,
    int drop_qmajor) {
    __shared__ float Ks[AT_TILE][AT_MAXD + 1];  // +1: lane j reads row j, conflict-free
    __shared__ float Vs[AT_TILE][AT_MAXD];
    __shared__ float Qs[2 * AT_MAXW][AT_MAXD];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int h = blockIdx.y, b = blockIdx.z;
    int i[2];
    bool active[2];  // uniform per warp; active[1] implies active[0]
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        i[r] = blockIdx.x * 2 * nw + r * nw + w;
        active[r] = i[r] < Nq;
        const i64 qoff = b * q_bs + (i64)i[r] * q_rs + h * dh;
        for (int d = lane; d < dh; d += 32) Qs[r * nw + w][d] = active[r] ? q[qoff + d] * scale : 0.0f;
    }
    const int per = dh >> 5;
    const float keep_scale = 1.0f / (1.0f - p_drop);
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};
    float acc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    for (int j0 = 0; j0 < Nk; j0 += AT_TILE) {
        __syncthreads();  // Qs written / the previous tile fully read
        stage_rows(Ks, Vs, k, b * k_bs + h * dh, k_rs, 1.0f, v, b * v_bs + h * dh, v_rs, j0, Nk, dh);
        __syncthreads();
        if (!active[0]) continue;
        const int j = j0 + lane;
        float s[2] = {NEG_INF, NEG_INF};
        if (j < Nk) {
            float dot0 = 0.0f, dot1 = 0.0f;
            for (int d = 0; d < dh; ++d) {
                const float kd = Ks[lane][d];
                dot0 += Qs[w][d] * kd;
                dot1 += Qs[nw + w][d] * kd;
            }
            const bool masked = mask && mask[(i64)b * Nk + j] == 0;
            s[0] = masked ? AT_MASKED : dot0;
            s[1] = masked ? AT_MASKED : dot1;
        }
        float pd[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float mn = fmaxf(m[r], warp_max(s[r]));  // finite: every tile holds a valid key
            const float corr = (m[r] == NEG_INF) ? 0.0f : expf(m[r] - mn);
            const float p = (j < Nk) ? expf(s[r] - mn) : 0.0f;
            l[r] = l[r] * corr + warp_sum(p);
            pd[r] = (j < Nk && active[r])
                        ? p * drop_factor(p_drop, keep_scale, seed, stream, offset,
                                          drop_index(drop_qmajor, b, h, i[r], j, H, Nq, Nk))
                        : 0.0f;
#pragma unroll
            for (int t = 0; t < 4; ++t) acc[r][t] *= corr;
            m[r] = mn;
        }
        const int jn = min(AT_TILE, Nk - j0);
        for (int jj = 0; jj < jn; ++jj) {
            const float p0 = __shfl_sync(0xffffffffu, pd[0], jj);
            const float p1 = __shfl_sync(0xffffffffu, pd[1], jj);
#pragma unroll
            for (int t = 0; t < 4; ++t)
                if (t < per) {
                    const float vv = Vs[jj][lane + 32 * t];
                    acc[0][t] += p0 * vv;
                    acc[1][t] += p1 * vv;
                }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        if (!active[r]) continue;
        const float inv = 1.0f / l[r];
        const i64 ooff = b * o_bs + (i64)i[r] * o_rs + h * dh;
#pragma unroll
        for (int t = 0; t < 4; ++t)
            if (t < per) out[ooff + lane + 32 * t] = acc[r][t] * inv;
        if (lse && lane == 0) lse[((i64)b * H + h) * Nq + i[r]] = m[r] + logf(l[r]);
    }
}

extern "C" __global__ void __launch_bounds__(256) attn_bwd_dq_f32(
    float* dq, float* delta, const float* dout, const float* out, const float* q, const float* k,
    const float* v, const u8* mask, const float* lse, int B, int H, int Nq, int Nk, int dh,
    i64 q_bs, i64 q_rs, i64 k_bs, i64 k_rs, i64 v_bs, i64 v_rs, i64 o_bs, i64 o_rs, float scale,
    float p_drop, u64 seed, u64 stream, u64 offset,
    int drop_qmajor) {
    __shared__ float Ks[AT_TILE][AT_MAXD + 1];
    __shared__ float Vs[AT_TILE][AT_MAXD + 1];
    __shared__ float Qs[AT_MAXW][AT_MAXD];
    __shared__ float dOs[AT_MAXW][AT_MAXD];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int h = blockIdx.y, b = blockIdx.z;
    const int i = blockIdx.x * nw + w;
    const bool active = i < Nq;
    const int per = dh >> 5;
    const float keep_scale = 1.0f / (1.0f - p_drop);
    const i64 qoff = b * q_bs + i * q_rs + h * dh;
    const i64 ooff = b * o_bs + i * o_rs + h * dh;
    const i64 row = ((i64)b * H + h) * Nq + i;
    float Di = 0.0f, L = 0.0f;
    if (active) {
        float part = 0.0f;
        for (int d = lane; d < dh; d += 32) {
            Qs[w][d] = q[qoff + d] * scale;
            const float g = dout[ooff + d];
            dOs[w][d] = g;
            part += g * out[ooff + d];
        }
        Di = warp_sum(part);
        L = lse[row];
        if (lane == 0) delta[row] = Di;
    }
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j0 = 0; j0 < Nk; j0 += AT_TILE) {
        __syncthreads();
        stage_rows(Ks, Vs, k, b * k_bs + h * dh, k_rs, 1.0f, v, b * v_bs + h * dh, v_rs, j0, Nk, dh);
        __syncthreads();
        if (!active) continue;
        const int j = j0 + lane;
        float ds = 0.0f;
        if (j < Nk) {
            const bool masked = mask && mask[(i64)b * Nk + j] == 0;
            if (!masked) {
                float s = 0.0f, dp = 0.0f;
                for (int d = 0; d < dh; ++d) {
                    s += Qs[w][d] * Ks[lane][d];
                    dp += dOs[w][d] * Vs[lane][d];
                }
                const float P = expf(s - L);
                const float z = drop_factor(p_drop, keep_scale, seed, stream, offset,
                                            drop_index(drop_qmajor, b, h, i, j, H, Nq, Nk));
                ds = P * (z * dp - Di);
            }
        }
        const int jn = min(AT_TILE, Nk - j0);
        for (int jj = 0; jj < jn; ++jj) {
            const float dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
            for (int t = 0; t < 4; ++t)
                if (t < per) acc[t] += dsj * Ks[jj][lane + 32 * t];
        }
    }
    if (!active) return;
#pragma unroll
    for (int t = 0; t < 4; ++t)
        if (t < per) dq[qoff + lane + 32 * t] = acc[t] * scale;
}

extern "C" __global__ void __launch_bounds__(256) attn_bwd_dkdv_f32(
    float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
    const u8* mask, const float* lse, const float* delta, int B, int H, int Nq, int Nk, int dh,
    i64 q_bs, i64 q_rs, i64 k_bs, i64 k_rs, i64 v_bs, i64 v_rs, i64 o_bs, i64 o_rs, float scale,
    float p_drop, u64 seed, u64 stream, u64 offset,
    int drop_qmajor) {
    __shared__ float Qs[AT_TILE][AT_MAXD + 1];   // scaled queries of the tile
    __shared__ float dOs[AT_TILE][AT_MAXD + 1];
    __shared__ float Kw[AT_MAXW][AT_MAXD];       // each warp's key and value
    __shared__ float Vw[AT_MAXW][AT_MAXD];
    __shared__ float Ls[AT_TILE], Ds[AT_TILE];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int h = blockIdx.y, b = blockIdx.z;
    const int j = blockIdx.x * nw + w;
    const bool active = j < Nk;
    const int per = dh >> 5;
    const float keep_scale = 1.0f / (1.0f - p_drop);
    const i64 koff = b * k_bs + j * k_rs + h * dh;
    const i64 voff = b * v_bs + j * v_rs + h * dh;
    const bool masked = active && mask && mask[(i64)b * Nk + j] == 0;
    if (active)
        for (int d = lane; d < dh; d += 32) {
            Kw[w][d] = k[koff + d];
            Vw[w][d] = v[voff + d];
        }
    const i64 row0 = ((i64)b * H + h) * Nq;
    float gk[4] = {0.0f, 0.0f, 0.0f, 0.0f}, gv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i0 = 0; i0 < Nq; i0 += AT_TILE) {
        __syncthreads();  // Kw/Vw written / the previous tile fully read
        stage_rows(Qs, dOs, q, b * q_bs + h * dh, q_rs, scale, dout, b * o_bs + h * dh, o_rs, i0,
                   Nq, dh);
        if (threadIdx.x < AT_TILE) {
            const int i = i0 + threadIdx.x;
            Ls[threadIdx.x] = i < Nq ? lse[row0 + i] : 0.0f;
            Ds[threadIdx.x] = i < Nq ? delta[row0 + i] : 0.0f;
        }
        __syncthreads();
        if (!active) continue;
        const int i = i0 + lane;
        float pz = 0.0f, ds = 0.0f;
        if (i < Nq) {
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < dh; ++d) {
                s += Qs[lane][d] * Kw[w][d];
                dp += dOs[lane][d] * Vw[w][d];
            }
            if (masked) s = AT_MASKED;
            const float P = expf(s - Ls[lane]);
            const float z =
                drop_factor(p_drop, keep_scale, seed, stream, offset,
                            drop_index(drop_qmajor, b, h, i, j, H, Nq, Nk));
            pz = P * z;
            ds = masked ? 0.0f : P * (z * dp - Ds[lane]);
        }
        const int in = min(AT_TILE, Nq - i0);
        for (int ii = 0; ii < in; ++ii) {
            const float pzi = __shfl_sync(0xffffffffu, pz, ii);
            const float dsi = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
            for (int t = 0; t < 4; ++t)
                if (t < per) {
                    gv[t] += pzi * dOs[ii][lane + 32 * t];
                    gk[t] += dsi * Qs[ii][lane + 32 * t];
                }
        }
    }
    if (!active) return;
#pragma unroll
    for (int t = 0; t < 4; ++t)
        if (t < per) {
            dk[koff + lane + 32 * t] = gk[t];  // Qs already carries the 1/sqrt(dh) scale
            dv[voff + lane + 32 * t] = gv[t];
        }
}

// The forward for Nq = 1 (the decoder's query against the N regions): one warp per (b, h),
// four warps per block, no shared memory. attn_fwd_f32 stages 32-key tiles of K and V in
// 37 KB of shared memory so that the block's 8 query rows share them; with one query there is
// nothing to share, and the 37 KB held each block of one warp to 6 warps per SM (on the H100
// 0.40 ms for 250 rows x 8 heads x 64 keys, 1.5x the unfused composition). Here the warp
// computes each key's score together (lane l multiplies dims l + 32 t, a warp sum gives the
// score to every lane; lane jj keeps key j0 + jj's), then runs the same online softmax and
// dropout as attn_fwd_f32 and accumulates P' V with coalesced rows of V.
// Same signature as attn_fwd_f32 (q_rs, o_rs and drop_qmajor are unused: with Nq = 1 both
// dropout orders give the index pair * Nk + j); the wrapper launches it for
// Nq = 1 with grid ceil(B * H / 4) and 128 threads.
extern "C" __global__ void __launch_bounds__(128) attn_decode_fwd_f32(
    float* out, float* lse, const float* q, const float* k, const float* v, const u8* mask, int B,
    int H, int Nq, int Nk, int dh, i64 q_bs, i64 q_rs, i64 k_bs, i64 k_rs, i64 v_bs, i64 v_rs,
    i64 o_bs, i64 o_rs, float scale, float p_drop, u64 seed, u64 stream, u64 offset,
    int drop_qmajor) {
    const int lane = threadIdx.x & 31;
    const i64 pair = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (pair >= (i64)B * H) return;  // whole warps only: no barrier or shuffle is skipped
    const int b = (int)(pair / H), h = (int)(pair % H);
    const int per = dh >> 5;
    const float keep_scale = 1.0f / (1.0f - p_drop);
    const float* qr = q + b * q_bs + h * dh;
    const float* kb = k + b * k_bs + h * dh;
    const float* vb = v + b * v_bs + h * dh;
    float qv[4];
#pragma unroll
    for (int t = 0; t < 4; ++t) qv[t] = t < per ? qr[lane + 32 * t] * scale : 0.0f;
    float m = NEG_INF, l = 0.0f, acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j0 = 0; j0 < Nk; j0 += AT_TILE) {
        const int jn = min(AT_TILE, Nk - j0);
        float dot = 0.0f;  // lane jj: the score of key j0 + jj
#pragma unroll 4
        for (int jj = 0; jj < jn; ++jj) {
            const float* kr = kb + (i64)(j0 + jj) * k_rs;
            float part = 0.0f;
#pragma unroll
            for (int t = 0; t < 4; ++t)
                if (t < per) part = fmaf(qv[t], kr[lane + 32 * t], part);
            part = warp_sum(part);
            if (lane == jj) dot = part;
        }
        const int j = j0 + lane;
        float s = NEG_INF;
        if (lane < jn) s = (mask && mask[(i64)b * Nk + j] == 0) ? AT_MASKED : dot;
        const float mn = fmaxf(m, warp_max(s));  // finite: every tile holds a valid key
        const float corr = (m == NEG_INF) ? 0.0f : expf(m - mn);
        const float p = (lane < jn) ? expf(s - mn) : 0.0f;
        l = l * corr + warp_sum(p);
        const float pd =
            lane < jn ? p * drop_factor(p_drop, keep_scale, seed, stream, offset, pair * Nk + j)
                      : 0.0f;
#pragma unroll
        for (int t = 0; t < 4; ++t) acc[t] *= corr;
#pragma unroll 4
        for (int jj = 0; jj < jn; ++jj) {
            const float pj = __shfl_sync(0xffffffffu, pd, jj);
            const float* vr = vb + (i64)(j0 + jj) * v_rs;
#pragma unroll
            for (int t = 0; t < 4; ++t)
                if (t < per) acc[t] = fmaf(pj, vr[lane + 32 * t], acc[t]);
        }
        m = mn;
    }
    const float inv = 1.0f / l;
    float* orow = out + b * o_bs + h * dh;
#pragma unroll
    for (int t = 0; t < 4; ++t)
        if (t < per) orow[lane + 32 * t] = acc[t] * inv;
    if (lse && lane == 0) lse[pair] = m + logf(l);
}
