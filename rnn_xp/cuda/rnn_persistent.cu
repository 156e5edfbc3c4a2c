// Persistent kernels: one launch runs every time step of one layer, both directions at once.
//
// Work split. Per direction the hidden units are cut into `row_blocks` slices of kRows = 4 * (32 / LB) units,
// and the batch into `batch_groups` groups of `tiles_per_group` tiles of kBatch = TB * LB samples. Block
// (direction, group, slice) keeps its slice of W_hh (forward: rows; backward: columns, i.e. rows of W_hh^T) in
// shared memory for all steps, and computes its slice of every tile of its group. Blocks of one (direction,
// group) exchange the new state (forward) or the new pre-activation gradient (backward) through global memory
// (L2) and wait for each other with one arrival counter per group: no grid-wide barrier, and groups run at their
// own pace. With a single slice (row_blocks == 1) and a single tile, a block owns everything it reads and keeps
// the state in shared memory between steps (no global round trip, no counter).
//
// Inner product. The tile's state rows and the slice's weight rows sit in shared memory, each row padded by 16
// bytes so that rows read together fall in different banks. The 8 warps split the reduction dimension (hidden)
// into 8 slices; in a warp, lane (lb, lr) accumulates a TB x 4 register tile over its slice with 16-byte loads,
// lanes of one lb sharing (broadcasting) state loads and lanes of one lr sharing weight loads. The 8 partial tiles
// are summed in shared memory in a fixed order: results are identical run to run. No atomics on data.
//
// Layouts and null pointers: see rnn_common.cuh. Counters: `directions * batch_groups` unsigned ints, zero on entry
// and zero again on exit (each group's last arrival resets its counter), so the wrapper keeps one buffer per stream.
#include "rnn_common.cuh"

namespace rnn_xp {

constexpr int kWarps = 8;  // matches THREADS = 256 in _launch.py

// 16 bytes of T: 4 floats or 2 doubles, read from shared memory with one vector load.
template <typename T>
struct alignas(16) Pack {
    static constexpr int n = 16 / sizeof(T);
    T v[n];
};

template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* address) {
    return *reinterpret_cast<const Pack<T>*>(address);
}

// 16 bytes global -> shared without passing through registers or L1; both addresses 16-byte aligned.
// (Without __CUDA_ARCH__ these are the CPU emulation's: tests/cuda_emulation compiles this file with g++.)
__device__ __forceinline__ void copy_async_16(void* shared, const void* global) {
#ifdef __CUDA_ARCH__
    const unsigned int address = static_cast<unsigned int>(__cvta_generic_to_shared(shared));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(global) : "memory");
#else
    __builtin_memcpy(shared, global, 16);
#endif
}

__device__ __forceinline__ void copy_async_wait() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

// Shared-memory geometry of one block; `padded` (the reduction length) is a multiple of kWarps * Pack<T>::n.
template <typename T, int TB, int LB>
struct Tiling {
    static constexpr int kLanesR = kWarp / LB;
    static constexpr int kRows = 4 * kLanesR;   // hidden units (forward) or columns (backward) of a slice
    static constexpr int kBatch = TB * LB;      // samples of a tile
    static constexpr int kVec = Pack<T>::n;
    int stride;                                 // padded + kVec elements between shared rows
    T* weight;                                  // kRows x stride
    T* tile;                                    // kBatch x stride: the state (or gradient) rows of a tile
    T* partial;                                 // kWarps x kBatch x kRows
    T* carry;                                   // backward only: tiles_per_group * kBatch x kRows

    __device__ Tiling(unsigned char* raw, int padded, bool with_carry) : stride(padded + kVec) {
        weight = reinterpret_cast<T*>(raw);
        tile = weight + kRows * stride;
        partial = tile + kBatch * stride;
        carry = with_carry ? partial + kWarps * kBatch * kRows : nullptr;
    }
};

// partial[warp] = tile[:, slice] . weight[:, slice]^T for this warp's slice of the reduction dimension.
template <typename T, int TB, int LB>
__device__ __forceinline__ void partial_products(const Tiling<T, TB, LB>& s, int padded) {
    using Tl = Tiling<T, TB, LB>;
    constexpr int kVec = Tl::kVec;
    const int lane = threadIdx.x % kWarp;
    const int warp = threadIdx.x / kWarp;
    const int lb = lane / Tl::kLanesR;
    const int lr = lane % Tl::kLanesR;
    const int length = padded / kWarps;
    const int k0 = warp * length;
    T acc[TB][4];
#pragma unroll
    for (int i = 0; i < TB; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = T(0);
    }
    const T* tile_row = s.tile + lb * s.stride + k0;
    const T* weight_row = s.weight + lr * s.stride + k0;
#pragma unroll 2
    for (int k = 0; k < length; k += kVec) {
        Pack<T> a[TB], w[4];
#pragma unroll
        for (int i = 0; i < TB; ++i) a[i] = load_pack(tile_row + i * LB * s.stride + k);
#pragma unroll
        for (int j = 0; j < 4; ++j) w[j] = load_pack(weight_row + j * Tl::kLanesR * s.stride + k);
#pragma unroll
        for (int v = 0; v < kVec; ++v) {
#pragma unroll
            for (int i = 0; i < TB; ++i) {
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i].v[v] * w[j].v[v];
            }
        }
    }
    T* out = s.partial + warp * Tl::kBatch * Tl::kRows;
#pragma unroll
    for (int i = 0; i < TB; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) out[(i * LB + lb) * Tl::kRows + j * Tl::kLanesR + lr] = acc[i][j];
    }
}

// The sum of the kWarps partial products of output `o` (b_local * kRows + r_local), in a fixed order.
template <typename T, int TB, int LB>
__device__ __forceinline__ T reduced(const Tiling<T, TB, LB>& s, int o) {
    constexpr int kPlane = Tiling<T, TB, LB>::kBatch * Tiling<T, TB, LB>::kRows;
    T sum = s.partial[o];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) sum += s.partial[w * kPlane + o];
    return sum;
}

// Copy `rows` rows of `hidden` elements (row stride `hidden`) from global memory written by other blocks during
// this launch into the tile (row stride s.stride), through L2 only (L1 is not coherent across SMs). With 16-byte
// rows the copies are asynchronous (cp.async.cg), all in flight at once; the caller's barrier follows the wait.
template <typename T, int TB, int LB>
__device__ __forceinline__ void load_tile(const Tiling<T, TB, LB>& s, const T* source, int rows, int hidden) {
    constexpr int kVec = Tiling<T, TB, LB>::kVec;
    if (hidden % kVec == 0) {
        const int packs = hidden / kVec;
        for (int i = threadIdx.x; i < rows * packs; i += blockDim.x) {
            const int b = i / packs;
            const int k = (i - b * packs) * kVec;
            copy_async_16(s.tile + b * s.stride + k, source + static_cast<size_t>(b) * hidden + k);
        }
        copy_async_wait();
    } else {
        for (int i = threadIdx.x; i < rows * hidden; i += blockDim.x) {
            const int b = i / hidden;
            const int k = i - b * hidden;
            s.tile[b * s.stride + k] = load_coherent(source + i);
        }
    }
}

// Zero `rows` rows of the tile (a state h0 = 0 where none was given).
template <typename T, int TB, int LB>
__device__ __forceinline__ void zero_tile(const Tiling<T, TB, LB>& s, int rows, int hidden) {
    for (int i = threadIdx.x; i < rows * hidden; i += blockDim.x) {
        const int b = i / hidden;
        s.tile[b * s.stride + (i - b * hidden)] = T(0);
    }
}

// The launch must be the plan's: every slice of every group present (the blocks derive their work from blockIdx,
// and wait for each other), and kWarps warps a block. Anything else stops the kernel with an error.
__device__ __forceinline__ void check_launch(int blocks) {
    if (gridDim.x != static_cast<unsigned int>(blocks) || blockDim.x != kWarps * kWarp) __trap();
}

// This block's share of the launch: its direction, its batch group, and the first hidden unit (forward) or column
// (backward) of its slice. Checks the launch shape first.
struct BlockWork {
    int direction, group, first;
    __device__ BlockWork(int directions, int row_blocks, int batch_groups, int rows) {
        const int per_direction = row_blocks * batch_groups;
        check_launch(directions * per_direction);
        direction = static_cast<int>(blockIdx.x) / per_direction;
        group = (static_cast<int>(blockIdx.x) % per_direction) / row_blocks;
        first = (static_cast<int>(blockIdx.x) % row_blocks) * rows;
    }
};

// Blocks of one group: announce that this block's part of the step is in global memory / wait for all of it.
// The arrival that brings the counter to `reset_at` (non-zero only for the group's last arrivals of the launch, which
// every block makes after its last wait) sets it back to zero, ready for the next launch on the stream.
__device__ __forceinline__ void arrive(unsigned int* counter, unsigned int reset_at) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        const unsigned int before = atomicAdd(counter, 1u);
        if (reset_at != 0u && before + 1u == reset_at) atomicExch(counter, 0u);
    }
}

__device__ __forceinline__ unsigned int load_acquire(const unsigned int* address) {
#ifdef __CUDA_ARCH__
    unsigned int value;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(value) : "l"(address) : "memory");
    return value;
#else
    return atomicAdd(const_cast<unsigned int*>(address), 0u);
#endif
}

__device__ __forceinline__ void wait_for(const unsigned int* counter, unsigned int target) {
    if (threadIdx.x == 0) {
        while (load_acquire(counter) < target) {
        }
    }
    __syncthreads();
}

}  // namespace rnn_xp

using rnn_xp::kWarp;
using rnn_xp::Tiling;

// Forward: states{0,1}[t] = h_t from projection{0,1}[t] = x_t W_ih^T; h0 (or zeros) copied to initial{0,1};
// `out` and h_n{0,1} written where given.
template <typename T, int TB, int LB>
__global__ void __launch_bounds__(256, 1) rnn_forward_persistent(
    const T* __restrict__ projection0, const T* __restrict__ projection1, const T* __restrict__ bias_ih0,
    const T* __restrict__ bias_hh0, const T* __restrict__ bias_ih1, const T* __restrict__ bias_hh1,
    const T* __restrict__ weight0, const T* __restrict__ weight1, const T* __restrict__ h0_0,
    const T* __restrict__ h0_1, T* states0, T* states1, T* initial0, T* initial1, T* out, T* h_n0, T* h_n1,
    const int* __restrict__ lengths, unsigned int* counters, int directions, int steps, int batch, int hidden,
    int padded, int row_blocks, int batch_groups, int tiles_per_group, int relu) {
    using Tl = Tiling<T, TB, LB>;
    extern __shared__ __align__(16) unsigned char shared_raw[];
    const Tl s(shared_raw, padded, false);

    const rnn_xp::BlockWork work(directions, row_blocks, batch_groups, Tl::kRows);
    const int direction = work.direction, group = work.group, row0 = work.first;
    const T* projection = direction ? projection1 : projection0;
    const T* bias_ih = direction ? bias_ih1 : bias_ih0;
    const T* bias_hh = direction ? bias_hh1 : bias_hh0;
    const T* weight = direction ? weight1 : weight0;
    const T* h0 = direction ? h0_1 : h0_0;
    T* states = direction ? states1 : states0;
    T* initial = direction ? initial1 : initial0;
    T* h_n = direction ? h_n1 : h_n0;
    unsigned int* counter = counters + direction * batch_groups + group;
    const size_t plane = static_cast<size_t>(batch) * hidden;
    const int out_stride = directions * hidden;
    // One block owns every row of its only tile: the state stays in shared memory between steps.
    const bool resident = row_blocks == 1 && tiles_per_group == 1;

    for (int i = threadIdx.x; i < (Tl::kRows + Tl::kBatch) * s.stride; i += blockDim.x) {
        const int r = i / s.stride;
        const int k = i - r * s.stride;
        s.weight[i] = (r < Tl::kRows && row0 + r < hidden && k < hidden)
                          ? weight[static_cast<size_t>(row0 + r) * hidden + k]
                          : T(0);  // also zeroes the tile, whose padding columns and rows must read as zero
    }
    // This block's part of h0 into `initial` (nobody reads it in this launch: the first step reads h0 itself).
    for (int tile = 0; tile < tiles_per_group; ++tile) {
        const int b0 = (group * tiles_per_group + tile) * Tl::kBatch;
        for (int o = threadIdx.x; o < Tl::kBatch * Tl::kRows; o += blockDim.x) {
            const int b = b0 + o / Tl::kRows;
            const int j = row0 + o % Tl::kRows;
            if (b < batch && j < hidden) {
                const size_t at = static_cast<size_t>(b) * hidden + j;
                initial[at] = h0 ? h0[at] : T(0);
            }
        }
    }

    // This thread's epilogue inputs: the projection of its outputs at a step, and their biases. With one tile per
    // group, the projection of step + 1 is loaded during step, off the critical path.
    T projected[2], bias_j[2];
    const auto fetch = [&](int t, int b0) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int o = threadIdx.x + e * blockDim.x;
            const int b = b0 + o / Tl::kRows;
            const int j = row0 + o % Tl::kRows;
            const bool mine = o < Tl::kBatch * Tl::kRows && b < batch && j < hidden;
            projected[e] = mine ? projection[static_cast<size_t>(t) * plane + static_cast<size_t>(b) * hidden + j]
                                : T(0);
            bias_j[e] = mine ? rnn_xp::bias_of(bias_ih, bias_hh, j) : T(0);
        }
    };
    const bool ahead = tiles_per_group == 1;
    if (ahead) fetch(rnn_xp::time_index(0, steps, direction), group * Tl::kBatch);

    for (int step = 0; step < steps; ++step) {
        const int t = rnn_xp::time_index(step, steps, direction);
        const bool last = step == steps - 1;
        const T* previous = step == 0 ? h0 : states + static_cast<size_t>(direction ? t + 1 : t - 1) * plane;
        T* current = states + static_cast<size_t>(t) * plane;
        if (step > 0 && !resident) rnn_xp::wait_for(counter, static_cast<unsigned int>(step * row_blocks));
        for (int tile = 0; tile < tiles_per_group; ++tile) {
            const int b0 = (group * tiles_per_group + tile) * Tl::kBatch;
            const int rows = min(Tl::kBatch, batch - b0);
            if (rows <= 0) break;  // uniform across the block
            __syncthreads();       // the previous tile's readers of s.tile and s.partial are done
            if (step == 0 || !resident) {
                if (previous) {
                    rnn_xp::load_tile(s, previous + static_cast<size_t>(b0) * hidden, rows, hidden);
                } else {
                    rnn_xp::zero_tile(s, rows, hidden);
                }
            }
            if (!ahead) fetch(t, b0);  // arrives while the products are computed
            __syncthreads();
            rnn_xp::partial_products(s, padded);
            __syncthreads();
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int o = threadIdx.x + e * blockDim.x;
                if (o >= Tl::kBatch * Tl::kRows) break;
                const int b_local = o / Tl::kRows;
                const int b = b0 + b_local;
                const int j = row0 + o % Tl::kRows;
                if (b >= batch || j >= hidden) continue;
                T* held = s.tile + b_local * s.stride + j;
                const bool valid = rnn_xp::valid_length(lengths, b, steps);
                const bool in = rnn_xp::inside(lengths, t, b);
                const T value =
                    rnn_xp::forward_value(valid, in, projected[e] + rnn_xp::reduced(s, o) + bias_j[e], *held, relu);
                const size_t at = static_cast<size_t>(b) * hidden + j;
                current[at] = value;
                if (out) out[(static_cast<size_t>(t) * batch + b) * out_stride + direction * hidden + j] =
                    rnn_xp::output_value(valid, in, value);
                if (last && h_n) h_n[at] = value;
                if (resident) *held = value;
            }
            if (ahead && !last) fetch(rnn_xp::time_index(step + 1, steps, direction), b0);
        }
        if (!resident) rnn_xp::arrive(counter, last ? static_cast<unsigned int>(steps * row_blocks) : 0u);
    }
}

// Backward through the recurrence. Block (direction, group, slice) owns columns [col0, col0 + kRows) of W_hh and
// keeps, for its samples and columns, the carried gradient d loss / d h_t (shared memory). Each step it reads the
// pre-activation gradient g_t (all columns) of its tiles, forms carry_{t-1} = g_t W_hh for its columns (held as
// is on padding), then g_{t-1} = (grad_out[t-1] + carry_{t-1}) * act'(h_{t-1}) for its columns (zero on
// padding), which it writes to grad_preact[t-1] for every block of the group to read at the next step.
// grad_out is (steps, batch, directions * hidden) or null; grad_h_n{0,1} (null: zeros) and grad_h0{0,1} are
// (batch, hidden). bias_partial{0,1}, where given, (batch_groups, hidden): row `group` gets the sum of g over the
// group's samples and every step (the bias gradient, less a sum over groups), in a fixed order.
template <typename T, int TB, int LB>
__global__ void __launch_bounds__(256, 1) rnn_backward_persistent(
    const T* __restrict__ grad_out, const T* __restrict__ states0, const T* __restrict__ states1,
    const T* __restrict__ weight0, const T* __restrict__ weight1, const T* __restrict__ grad_h_n0,
    const T* __restrict__ grad_h_n1, T* grad_preact0, T* grad_preact1, T* grad_h0_0, T* grad_h0_1,
    T* bias_partial0, T* bias_partial1, const int* __restrict__ lengths, unsigned int* counters, int directions,
    int steps, int batch, int hidden, int padded, int row_blocks, int batch_groups, int tiles_per_group, int relu) {
    using Tl = Tiling<T, TB, LB>;
    extern __shared__ __align__(16) unsigned char shared_raw[];
    const Tl s(shared_raw, padded, true);

    const rnn_xp::BlockWork work(directions, row_blocks, batch_groups, Tl::kRows);
    const int direction = work.direction, group = work.group, col0 = work.first;
    const T* states = direction ? states1 : states0;
    const T* weight = direction ? weight1 : weight0;
    const T* grad_h_n = direction ? grad_h_n1 : grad_h_n0;
    T* grad_preact = direction ? grad_preact1 : grad_preact0;
    T* grad_h0 = direction ? grad_h0_1 : grad_h0_0;
    T* bias_partial = direction ? bias_partial1 : bias_partial0;
    unsigned int* counter = counters + direction * batch_groups + group;
    const size_t plane = static_cast<size_t>(batch) * hidden;
    const int grad_stride = directions * hidden;
    T bias_sum[2] = {T(0), T(0)};  // this thread's outputs o = threadIdx.x + e * blockDim.x, over tiles and steps
    const bool resident = row_blocks == 1 && tiles_per_group == 1;
    constexpr int kOutputs = Tl::kBatch * Tl::kRows;

    // weight[c][j] = W_hh[j][col0 + c]: consecutive threads read consecutive columns of one row of W_hh.
    for (int i = threadIdx.x; i < Tl::kRows * s.stride; i += blockDim.x) {
        const int j = i / Tl::kRows;
        const int c = i - j * Tl::kRows;
        s.weight[c * s.stride + j] =
            (col0 + c < hidden && j < hidden) ? weight[static_cast<size_t>(j) * hidden + col0 + c] : T(0);
    }
    for (int i = threadIdx.x; i < Tl::kBatch * s.stride; i += blockDim.x) s.tile[i] = T(0);
    __syncthreads();  // the zeroed tile before the start below writes into it (resident case)

    // Start: carry = grad_h_n; g at the first visited step, for this block's columns.
    const int first = rnn_xp::time_index(0, steps, 1 - direction);
    for (int tile = 0; tile < tiles_per_group; ++tile) {
        const int b0 = (group * tiles_per_group + tile) * Tl::kBatch;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int o = threadIdx.x + e * blockDim.x;
            if (o >= kOutputs) break;
            const int b_local = o / Tl::kRows;
            const int b = b0 + b_local;
            const int c = col0 + o % Tl::kRows;
            if (b >= batch || c >= hidden) continue;
            const size_t at = static_cast<size_t>(b) * hidden + c;
            const bool valid = rnn_xp::valid_length(lengths, b, steps);
            const T carry = !valid ? rnn_xp::quiet_nan(T(0)) : (grad_h_n ? grad_h_n[at] : T(0));
            s.carry[tile * kOutputs + o] = carry;
            const T arrived = rnn_xp::element_or_zero(grad_out, first, b, direction * hidden + c, batch, grad_stride);
            const T g = !valid ? rnn_xp::quiet_nan(T(0))
                        : rnn_xp::inside(lengths, first, b)
                            ? rnn_xp::through_activation(arrived + carry, states[first * plane + at], relu)
                            : T(0);
            grad_preact[first * plane + at] = g;
            if (resident) s.tile[b_local * s.stride + c] = g;
            bias_sum[e] += g;
        }
    }
    if (!resident) rnn_xp::arrive(counter, 0u);

    // This thread's epilogue inputs for the step after the current one: grad_out and states there. With one
    // tile per group they are loaded a step early, off the critical path.
    T grad_next[2], state_next[2];
    const auto fetch = [&](int step, int b0) {
        const bool any = step + 1 < steps;
        const int next = any ? rnn_xp::time_index(step + 1, steps, 1 - direction) : 0;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int o = threadIdx.x + e * blockDim.x;
            const int b = b0 + o / Tl::kRows;
            const int c = col0 + o % Tl::kRows;
            const bool mine = any && o < kOutputs && b < batch && c < hidden;
            grad_next[e] = mine ? rnn_xp::element_or_zero(grad_out, next, b, direction * hidden + c, batch, grad_stride)
                                : T(0);
            state_next[e] = mine ? states[static_cast<size_t>(next) * plane + static_cast<size_t>(b) * hidden + c]
                                 : T(0);
        }
    };
    const bool ahead = tiles_per_group == 1;
    if (ahead) fetch(0, group * Tl::kBatch);

    for (int step = 0; step < steps; ++step) {
        const int t = rnn_xp::time_index(step, steps, 1 - direction);
        const bool last = step == steps - 1;
        const int next = last ? t : rnn_xp::time_index(step + 1, steps, 1 - direction);
        if (!resident) rnn_xp::wait_for(counter, static_cast<unsigned int>((step + 1) * row_blocks));
        for (int tile = 0; tile < tiles_per_group; ++tile) {
            const int b0 = (group * tiles_per_group + tile) * Tl::kBatch;
            const int rows = min(Tl::kBatch, batch - b0);
            if (rows <= 0) break;
            __syncthreads();
            if (!resident) {
                rnn_xp::load_tile(s, grad_preact + static_cast<size_t>(t) * plane + static_cast<size_t>(b0) * hidden,
                                  rows, hidden);
            }
            if (!ahead) fetch(step, b0);
            __syncthreads();
            rnn_xp::partial_products(s, padded);
            __syncthreads();
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int o = threadIdx.x + e * blockDim.x;
                if (o >= kOutputs) break;
                const int b_local = o / Tl::kRows;
                const int b = b0 + b_local;
                const int c = col0 + o % Tl::kRows;
                if (b >= batch || c >= hidden) continue;
                const bool valid = rnn_xp::valid_length(lengths, b, steps);
                T& carry = s.carry[tile * kOutputs + o];
                if (rnn_xp::inside(lengths, t, b)) carry = rnn_xp::reduced(s, o);
                if (!valid) carry = rnn_xp::quiet_nan(T(0));
                const size_t at = static_cast<size_t>(b) * hidden + c;
                if (last) {
                    grad_h0[at] = carry;
                } else {
                    const T g = !valid ? rnn_xp::quiet_nan(T(0))
                                : rnn_xp::inside(lengths, next, b)
                                    ? rnn_xp::through_activation(grad_next[e] + carry, state_next[e], relu)
                                    : T(0);
                    grad_preact[static_cast<size_t>(next) * plane + at] = g;
                    if (resident) s.tile[b_local * s.stride + c] = g;
                    bias_sum[e] += g;
                }
            }
            if (ahead) fetch(step + 1, b0);
        }
        if (!resident && !last) rnn_xp::arrive(counter, 0u);
    }
    if (bias_partial) {  // the block's columns, summed over its samples in order (partial[] is free by now)
        __syncthreads();
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int o = threadIdx.x + e * blockDim.x;
            if (o < kOutputs) s.partial[o] = bias_sum[e];
        }
        __syncthreads();
        for (int r = threadIdx.x; r < Tl::kRows && col0 + r < hidden; r += blockDim.x) {
            T sum = T(0);
            for (int b_local = 0; b_local < Tl::kBatch; ++b_local) sum += s.partial[b_local * Tl::kRows + r];
            bias_partial[static_cast<size_t>(group) * hidden + col0 + r] = sum;
        }
    }
    // Every block arrives once more after its last wait; the group's last such arrival resets the counter.
    if (!resident) rnn_xp::arrive(counter, static_cast<unsigned int>((steps + 1) * row_blocks));
}

#ifdef RNN_XP_EXPLICIT_INSTANTIATION  // for the nvcc compile check; CuPy instantiates through name_expressions
#define RNN_XP_INSTANTIATE(T, TB, LB)                                                                               \
    template __global__ void rnn_forward_persistent<T, TB, LB>(                                                     \
        const T*, const T*, const T*, const T*, const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, \
        T*, T*, T*, T*, T*, const int*, unsigned int*, int, int, int, int, int, int, int, int, int);                \
    template __global__ void rnn_backward_persistent<T, TB, LB>(const T*, const T*, const T*, const T*, const T*, \
                                                                const T*, const T*, T*, T*, T*, T*, T*, T*,      \
                                                                const int*, unsigned int*, int, int, int, int,   \
                                                                int, int, int, int, int);
RNN_XP_INSTANTIATE(float, 1, 1)
RNN_XP_INSTANTIATE(float, 4, 4)
RNN_XP_INSTANTIATE(float, 2, 8)
RNN_XP_INSTANTIATE(double, 1, 1)
RNN_XP_INSTANTIATE(double, 4, 4)
RNN_XP_INSTANTIATE(double, 2, 8)
#undef RNN_XP_INSTANTIATE
#endif
