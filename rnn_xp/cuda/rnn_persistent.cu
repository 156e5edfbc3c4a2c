// Persistent cooperative kernels: one launch runs every time step of one layer, both directions at once.
//
// Grid: `directions` groups of blocks, one block per SM; block k of a direction owns `rows_per_block` hidden
// units and keeps their rows of W_hh (forward) or columns of W_hh (backward) in shared memory for all steps.
// Each step stages the previous state (or gradient) of a batch tile in shared memory, computes the block's
// outputs as 4x4 register tiles per warp with butterfly warp sums (fixed order: bit-reproducible), applies the
// epilogue, and ends with one grid-wide barrier. No atomics.
#include <cooperative_groups.h>

#include "rnn_common.cuh"

namespace cg = cooperative_groups;
using rnn_xp::kTile;
using rnn_xp::kWarp;

// Forward. On entry states{0,1}[t] hold x_t W_ih^T (the caller's projection); on exit they hold h_t.
template <typename T>
__global__ void __launch_bounds__(256) rnn_forward_persistent(
    T* states0, T* states1, const T* __restrict__ bias0, const T* __restrict__ bias1, int has_bias,
    const T* __restrict__ weight0, const T* __restrict__ weight1, const T* __restrict__ h0_0,
    const T* __restrict__ h0_1, const int* __restrict__ lengths, int has_lengths, int steps, int batch,
    int hidden, int directions, int rows_per_block, int batch_tile, int relu) {
    cg::grid_group grid = cg::this_grid();
    extern __shared__ __align__(16) unsigned char shared_raw[];
    T* weight_s = reinterpret_cast<T*>(shared_raw);  // rows_per_block x hidden
    T* state_s = weight_s + rows_per_block * hidden;   // batch_tile x hidden

    const int blocks_per_direction = gridDim.x / directions;
    const int direction = blockIdx.x / blocks_per_direction;
    const int row0 = (blockIdx.x - direction * blocks_per_direction) * rows_per_block;
    const int rows = max(0, min(rows_per_block, hidden - row0));
    T* states = direction ? states1 : states0;
    const T* bias = direction ? bias1 : bias0;
    const T* weight = direction ? weight1 : weight0;
    const T* h0 = direction ? h0_1 : h0_0;

    for (int i = threadIdx.x; i < rows * hidden; i += blockDim.x) weight_s[i] = weight[row0 * hidden + i];

    const int lane = threadIdx.x % kWarp;
    const int warp = threadIdx.x / kWarp;
    const int warps = blockDim.x / kWarp;
    const int row_groups = (rows + kTile - 1) / kTile;
    const size_t plane = static_cast<size_t>(batch) * hidden;

    for (int step = 0; step < steps; ++step) {
        const int t = rnn_xp::time_index(step, steps, direction);
        const T* previous = step == 0 ? h0 : states + static_cast<size_t>(direction ? t + 1 : t - 1) * plane;
        T* current = states + static_cast<size_t>(t) * plane;
        for (int b0 = 0; b0 < batch; b0 += batch_tile) {
            const int tile_rows = min(batch_tile, batch - b0);
            __syncthreads();  // the previous tile's readers are done (and weight_s is loaded)
            for (int i = threadIdx.x; i < tile_rows * hidden; i += blockDim.x) {
                state_s[i] = rnn_xp::load_coherent(previous + static_cast<size_t>(b0) * hidden + i);
            }
            __syncthreads();
            const int batch_groups = (tile_rows + kTile - 1) / kTile;
            for (int task = warp; task < batch_groups * row_groups; task += warps) {
                const int b_local = (task / row_groups) * kTile;
                const int r_local = (task % row_groups) * kTile;
                T sums[kTile][kTile];
                rnn_xp::tile_dot(state_s + b_local * hidden, min(kTile, tile_rows - b_local),
                                 weight_s + r_local * hidden, min(kTile, rows - r_local), hidden, hidden, lane,
                                 sums);
                const int bi = lane / kTile;
                const int ri = lane % kTile;
                const T mine = rnn_xp::tile_element(sums, lane);
                if (lane < kTile * kTile && b_local + bi < tile_rows && r_local + ri < rows) {
                    const int b = b0 + b_local + bi;
                    const int j = row0 + r_local + ri;
                    T* out = current + static_cast<size_t>(b) * hidden + j;
                    if (rnn_xp::inside(lengths, has_lengths, t, b)) {
                        const T z = *out + mine + (has_bias ? bias[j] : T(0));
                        *out = rnn_xp::activate(z, relu);
                    } else {
                        *out = state_s[(b_local + bi) * hidden + j];
                    }
                }
            }
        }
        grid.sync();
    }
}

// Backward through the recurrence. carry is (2, directions, batch, hidden), ping-ponged between steps: on entry
// carry[0] holds grad_h_n; after `steps` steps carry[steps % 2] holds grad_h0. grad_preact{0,1} (steps, batch,
// hidden) receive d loss / d pre-activation, zero on padding. Block k owns columns [k*cols, (k+1)*cols) of W_hh.
template <typename T>
__global__ void __launch_bounds__(256) rnn_backward_persistent(
    const T* __restrict__ grad_states0, const T* __restrict__ grad_states1, const T* __restrict__ states0,
    const T* __restrict__ states1, const T* __restrict__ weight0, const T* __restrict__ weight1, T* carry,
    T* grad_preact0, T* grad_preact1, const int* __restrict__ lengths, int has_lengths, int steps, int batch,
    int hidden, int directions, int cols_per_block, int batch_tile, int relu) {
    cg::grid_group grid = cg::this_grid();
    extern __shared__ __align__(16) unsigned char shared_raw[];
    T* weight_t_s = reinterpret_cast<T*>(shared_raw);  // cols_per_block x hidden: weight_t_s[c][j] = W[j][col0+c]
    T* grad_s = weight_t_s + cols_per_block * hidden;   // batch_tile x hidden

    const int blocks_per_direction = gridDim.x / directions;
    const int direction = blockIdx.x / blocks_per_direction;
    const int col0 = (blockIdx.x - direction * blocks_per_direction) * cols_per_block;
    const int cols = max(0, min(cols_per_block, hidden - col0));
    const T* grad_states = direction ? grad_states1 : grad_states0;
    const T* states = direction ? states1 : states0;
    const T* weight = direction ? weight1 : weight0;
    T* grad_preact = direction ? grad_preact1 : grad_preact0;

    for (int i = threadIdx.x; i < cols * hidden; i += blockDim.x) {
        const int c = i / hidden;
        const int j = i - c * hidden;
        weight_t_s[i] = weight[static_cast<size_t>(j) * hidden + col0 + c];
    }

    const int lane = threadIdx.x % kWarp;
    const int warp = threadIdx.x / kWarp;
    const int warps = blockDim.x / kWarp;
    const int col_groups = (cols + kTile - 1) / kTile;
    const size_t plane = static_cast<size_t>(batch) * hidden;

    for (int step = 0; step < steps; ++step) {
        // The reverse of the forward's visiting order.
        const int t = rnn_xp::time_index(step, steps, 1 - direction);
        const T* carry_old = carry + static_cast<size_t>((step % 2) * directions + direction) * plane;
        T* carry_new = carry + static_cast<size_t>(((step + 1) % 2) * directions + direction) * plane;
        const size_t at_t = static_cast<size_t>(t) * plane;
        for (int b0 = 0; b0 < batch; b0 += batch_tile) {
            const int tile_rows = min(batch_tile, batch - b0);
            __syncthreads();
            for (int i = threadIdx.x; i < tile_rows * hidden; i += blockDim.x) {
                const int b = b0 + i / hidden;
                const int j = i % hidden;
                const size_t at = static_cast<size_t>(b) * hidden + j;
                T grad = T(0);
                if (rnn_xp::inside(lengths, has_lengths, t, b)) {
                    grad = (grad_states[at_t + at] + rnn_xp::load_coherent(carry_old + at)) *
                           rnn_xp::activation_slope(states[at_t + at], relu);
                }
                grad_s[i] = grad;
                if (j >= col0 && j < col0 + cols) grad_preact[at_t + at] = grad;
            }
            __syncthreads();
            const int batch_groups = (tile_rows + kTile - 1) / kTile;
            for (int task = warp; task < batch_groups * col_groups; task += warps) {
                const int b_local = (task / col_groups) * kTile;
                const int c_local = (task % col_groups) * kTile;
                T sums[kTile][kTile];
                rnn_xp::tile_dot(grad_s + b_local * hidden, min(kTile, tile_rows - b_local),
                                 weight_t_s + c_local * hidden, min(kTile, cols - c_local), hidden, hidden, lane,
                                 sums);
                const int bi = lane / kTile;
                const int ci = lane % kTile;
                const T mine = rnn_xp::tile_element(sums, lane);
                if (lane < kTile * kTile && b_local + bi < tile_rows && c_local + ci < cols) {
                    const int b = b0 + b_local + bi;
                    const size_t at = static_cast<size_t>(b) * hidden + col0 + c_local + ci;
                    carry_new[at] =
                        rnn_xp::inside(lengths, has_lengths, t, b) ? mine : rnn_xp::load_coherent(carry_old + at);
                }
            }
        }
        grid.sync();
    }
}

#ifdef RNN_XP_EXPLICIT_INSTANTIATION  // for the nvcc compile check; CuPy instantiates through name_expressions
template __global__ void rnn_forward_persistent<float>(float*, float*, const float*, const float*, int,
                                                       const float*, const float*, const float*, const float*,
                                                       const int*, int, int, int, int, int, int, int, int);
template __global__ void rnn_forward_persistent<double>(double*, double*, const double*, const double*, int,
                                                        const double*, const double*, const double*,
                                                        const double*, const int*, int, int, int, int, int, int,
                                                        int, int);
template __global__ void rnn_backward_persistent<float>(const float*, const float*, const float*, const float*,
                                                        const float*, const float*, float*, float*, float*,
                                                        const int*, int, int, int, int, int, int, int, int);
template __global__ void rnn_backward_persistent<double>(const double*, const double*, const double*,
                                                         const double*, const double*, const double*, double*,
                                                         double*, double*, const int*, int, int, int, int, int,
                                                         int, int, int);
#endif
