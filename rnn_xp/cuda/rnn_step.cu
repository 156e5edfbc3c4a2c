// Per-step fused kernels, for hidden sizes whose W_hh does not fit on chip across the SMs.
//
// One launch per time step and direction. Grid: x over groups of kTile hidden units (kTile per warp, 8 warps a
// block), y over groups of kTile batch rows. W_hh is read from global memory (L2-resident between steps).
// Everything of a step happens in the launch: h_{t-1} W_hh^T, both biases, activation, length mask and write
// (forward); gradient through the activation, length mask and dz W_hh (backward). No atomics.
#include "rnn_common.cuh"

using rnn_xp::kTile;
using rnn_xp::kWarp;

// states[t] holds x_t W_ih^T on entry and h_t on exit; `previous` is h_{t-1} (h0 at the first step).
template <typename T>
__global__ void __launch_bounds__(256) rnn_forward_step(T* states, const T* previous, const T* __restrict__ bias,
                                                        int has_bias, const T* __restrict__ weight,
                                                        const int* __restrict__ lengths, int has_lengths, int t,
                                                        int batch, int hidden, int relu) {
    const int lane = threadIdx.x % kWarp;
    const int row_local = (blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp) * kTile;
    const int b_local = blockIdx.y * kTile;
    if (row_local >= hidden) return;  // whole warps leave together
    const int rows = min(kTile, hidden - row_local);
    const int tile_rows = min(kTile, batch - b_local);
    T sums[kTile][kTile];
    rnn_xp::tile_dot(previous + static_cast<size_t>(b_local) * hidden, tile_rows,
                     weight + static_cast<size_t>(row_local) * hidden, rows, hidden, hidden, lane, sums);
    const int bi = lane / kTile;
    const int ri = lane % kTile;
    const T mine = rnn_xp::tile_element(sums, lane);
    if (lane < kTile * kTile && bi < tile_rows && ri < rows) {
        const int b = b_local + bi;
        const int j = row_local + ri;
        const size_t at = static_cast<size_t>(b) * hidden + j;
        T* out = states + static_cast<size_t>(t) * batch * hidden + at;
        if (rnn_xp::inside(lengths, has_lengths, t, b)) {
            *out = rnn_xp::activate(*out + mine + (has_bias ? bias[j] : T(0)), relu);
        } else {
            *out = previous[at];
        }
    }
}

// One backward step at time t: grad = (grad_states[t] + carry_old) * act'(states[t]) on samples inside their
// length (zero outside), written to grad_preact[t] by the warps of the first column group; then
// carry_new = grad W_hh inside, carry_old outside. Each warp recomputes the grad rows it reads.
template <typename T>
__global__ void __launch_bounds__(256) rnn_backward_step(const T* __restrict__ grad_states,
                                                         const T* __restrict__ states, const T* __restrict__ weight,
                                                         const T* __restrict__ carry_old, T* carry_new,
                                                         T* grad_preact, const int* __restrict__ lengths,
                                                         int has_lengths, int t, int batch, int hidden, int relu) {
    const int lane = threadIdx.x % kWarp;
    const int col_local = (blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp) * kTile;
    const int b_local = blockIdx.y * kTile;
    if (col_local >= hidden) return;
    const int cols = min(kTile, hidden - col_local);
    const int tile_rows = min(kTile, batch - b_local);
    const bool writer = col_local == 0;
    const size_t at_t = static_cast<size_t>(t) * batch * hidden;
    T sums[kTile][kTile];
#pragma unroll
    for (int i = 0; i < kTile; ++i) {
#pragma unroll
        for (int c = 0; c < kTile; ++c) sums[i][c] = T(0);
    }
    for (int j = lane; j < hidden; j += kWarp) {
        T grad[kTile], w[kTile];
#pragma unroll
        for (int i = 0; i < kTile; ++i) {
            const int b = b_local + i;
            grad[i] = T(0);
            if (i < tile_rows && rnn_xp::inside(lengths, has_lengths, t, b)) {
                const size_t at = static_cast<size_t>(b) * hidden + j;
                grad[i] = (grad_states[at_t + at] + carry_old[at]) * rnn_xp::activation_slope(states[at_t + at], relu);
            }
            if (writer && i < tile_rows) grad_preact[at_t + static_cast<size_t>(b) * hidden + j] = grad[i];
            w[i] = i < cols ? weight[static_cast<size_t>(j) * hidden + col_local + i] : T(0);
        }
#pragma unroll
        for (int i = 0; i < kTile; ++i) {
#pragma unroll
            for (int c = 0; c < kTile; ++c) sums[i][c] += grad[i] * w[c];
        }
    }
#pragma unroll
    for (int i = 0; i < kTile; ++i) {
#pragma unroll
        for (int c = 0; c < kTile; ++c) sums[i][c] = rnn_xp::warp_sum(sums[i][c]);
    }
    const int bi = lane / kTile;
    const int ci = lane % kTile;
    const T mine = rnn_xp::tile_element(sums, lane);
    if (lane < kTile * kTile && bi < tile_rows && ci < cols) {
        const int b = b_local + bi;
        const size_t at = static_cast<size_t>(b) * hidden + col_local + ci;
        carry_new[at] = rnn_xp::inside(lengths, has_lengths, t, b) ? mine : carry_old[at];
    }
}

#ifdef RNN_XP_EXPLICIT_INSTANTIATION  // for the nvcc compile check; CuPy instantiates through name_expressions
template __global__ void rnn_forward_step<float>(float*, const float*, const float*, int, const float*,
                                                 const int*, int, int, int, int, int);
template __global__ void rnn_forward_step<double>(double*, const double*, const double*, int, const double*,
                                                  const int*, int, int, int, int, int);
template __global__ void rnn_backward_step<float>(const float*, const float*, const float*, const float*, float*,
                                                  float*, const int*, int, int, int, int, int);
template __global__ void rnn_backward_step<double>(const double*, const double*, const double*, const double*,
                                                   double*, double*, const int*, int, int, int, int, int);
#endif
