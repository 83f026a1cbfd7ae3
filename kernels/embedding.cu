// embedding.cu — embedding lookup and its gradient (scatter-add).
//
// Kernels (wrappers: src/cuda/kernels/embedding.rs; tests: tests/cuda_embedding.rs):
//   embedding_fwd_f32   out[t, :] = table[ids[t], :]; an id outside [0, vocab) writes NaN so
//                       the error cannot pass silently (the wrapper also checks ids on upload)
//   embedding_bwd_f32   dtable[ids[t], :] += dout[t, :] for every token t, in token order
//
// The backward gives each thread one column d and walks the tokens in order: two tokens with
// the same id never race (they are handled by the same thread), no atomics are needed, and
// the sums are bit-for-bit reproducible (and equal to a sequential CPU loop over tokens).

#include "common.cuh"

extern "C" __global__ void embedding_fwd_f32(float* out, const float* table, const int* ids, i64 n,
                                             int dim, int vocab) {
    const i64 total = n * dim;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        const i64 t = i / dim;
        const int d = (int)(i % dim);
        const int id = ids[t];
        out[i] = (id >= 0 && id < vocab) ? table[(i64)id * dim + d] : __int_as_float(0x7fc00000);
    }
}

// grid-stride over columns; each thread loops over all n tokens.
extern "C" __global__ void embedding_bwd_f32(float* dtable, const float* dout, const int* ids, i64 n,
                                             int dim, int vocab) {
    for (int d = blockIdx.x * blockDim.x + threadIdx.x; d < dim; d += gridDim.x * blockDim.x) {
        for (i64 t = 0; t < n; ++t) {
            const int id = ids[t];
            if (id >= 0 && id < vocab) dtable[(i64)id * dim + d] += dout[t * dim + d];
        }
    }
}
