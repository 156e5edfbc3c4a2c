// Small-H kernels (hidden <= 256, float): W_hh held in registers, one launch per layer, both directions at once.
//
// Work split. Block (direction, group) runs every step of its `BG` samples alone: no block waits for another, so
// any number of blocks can run, in as many waves as the GPU needs. Its thread j owns hidden unit j (forward: row j
// of W_hh; backward: column j) and keeps the first KR weights of it in registers, the rest (hidden > KR) in shared
// memory, stored so that the threads of a warp read consecutive words. The state (forward) or pre-activation
// gradient (backward) of the block's samples is double-buffered in shared memory: a step reads one buffer, writes
// the other, and ends with the block's only barrier. Every thread reads the same state words at the same time (a
// broadcast, 16 bytes a load). The projection (forward), or grad_out and the states (backward), of the next step
// are loaded before the current step's products, so their latency hides behind them.
//
// Each unit's dot product runs in a fixed order (independent partial sums over fixed slices of k, added in a fixed
// order): results are identical run to run. Layouts and null pointers: see rnn_common.cuh.
#include "rnn_common.cuh"

namespace rnn_xp {

// Floats between the samples' rows of the shared state: at least KR (the register part reads that far), a multiple
// of 4 (16-byte loads).
__device__ __forceinline__ int register_stride(int hidden, int columns) {
    const int rounded = (hidden + 3) / 4 * 4;
    return rounded > columns ? rounded : columns;
}

// Independent partial sums per sample: enough to keep a few FMAs in flight with one sample a block.
template <int BG>
struct Chains {
    static constexpr int n = BG >= 4 ? 1 : 4 / BG;
};

// acc[bg] = sum_k w(k) * state[bg][k] over k < stride: the register part (k < KR), then the shared part, whose
// column k is far[(k - KR) * threads + unit].
template <typename T, int KR, int BG>
__device__ __forceinline__ void dot_products(const T (&w)[KR], const T* __restrict__ far, const T* state, int stride,
                                             int threads, int unit, T (&acc)[BG]) {
    constexpr int kChains = Chains<BG>::n;
    T partial[BG][kChains];
#pragma unroll
    for (int bg = 0; bg < BG; ++bg) {
#pragma unroll
        for (int c = 0; c < kChains; ++c) partial[bg][c] = T(0);
    }
#pragma unroll
    for (int k = 0; k < KR; k += 4) {
#pragma unroll
        for (int bg = 0; bg < BG; ++bg) {
            const float4 v = *reinterpret_cast<const float4*>(state + bg * stride + k);
            T& sum = partial[bg][(k / 4) % kChains];
            sum += w[k] * v.x;
            sum += w[k + 1] * v.y;
            sum += w[k + 2] * v.z;
            sum += w[k + 3] * v.w;
        }
    }
#pragma unroll 1  // unrolled, its loads would be hoisted and take the registers the weights need (ptxas spilled)
    for (int k = KR; k < stride; k += 4) {
        const T* column = far + (k - KR) * threads + unit;
        const T w0 = column[0], w1 = column[threads], w2 = column[2 * threads], w3 = column[3 * threads];
#pragma unroll
        for (int bg = 0; bg < BG; ++bg) {
            const float4 v = *reinterpret_cast<const float4*>(state + bg * stride + k);
            T& sum = partial[bg][0];
            sum += w0 * v.x;
            sum += w1 * v.y;
            sum += w2 * v.z;
            sum += w3 * v.w;
        }
    }
#pragma unroll
    for (int bg = 0; bg < BG; ++bg) {
        T total = partial[bg][0];
#pragma unroll
        for (int c = 1; c < kChains; ++c) total += partial[bg][c];
        acc[bg] = total;
    }
}

// Thread `unit`'s weights: w(k) = weight[unit * hidden + k] (forward, row `unit`) or weight[k * hidden + unit]
// (backward, column `unit`); registers for k < KR, and the block's shared columns k >= KR. Zero past hidden.
template <typename T, int KR>
__device__ __forceinline__ void load_weights(const T* __restrict__ weight, bool by_column, int hidden, int stride,
                                             T (&w)[KR], T* far) {
    const int unit = threadIdx.x;
    const auto at = [&](int row, int k) {
        return by_column ? static_cast<size_t>(k) * hidden + row : static_cast<size_t>(row) * hidden + k;
    };
    // One pointer walked along the unit's weights: precomputed addresses of all KR loads spilled (backward, KR=128).
    const T* walk = weight + (by_column ? unit : static_cast<size_t>(unit) * hidden);
    const int step = by_column ? hidden : 1;
#pragma unroll
    for (int k = 0; k < KR; ++k) {
        w[k] = (unit < hidden && k < hidden) ? *walk : T(0);
        walk += k + 1 < hidden ? step : 0;
    }
    const int threads = static_cast<int>(blockDim.x);
    for (int i = threadIdx.x; i < (stride - KR) * threads; i += threads) {
        const int k = KR + i / threads;
        const int row = i % threads;
        far[i] = (row < hidden && k < hidden) ? weight[at(row, k)] : T(0);
    }
}

// The launch must be the plan's: one thread per unit (a whole number of warps), every (direction, group) a block.
__device__ __forceinline__ void check_register_launch(int directions, int groups, int hidden) {
    if (gridDim.x != static_cast<unsigned int>(directions * groups) || blockDim.x % kWarp != 0 ||
        static_cast<int>(blockDim.x) < hidden || blockDim.x > 256) {
        __trap();
    }
}

}  // namespace rnn_xp

// Forward: states{0,1}[t] = h_t from projection{0,1}[t] = x_t W_ih^T; h0 (or zeros) copied to initial{0,1};
// `out` and h_n{0,1} written where given. Dynamic shared memory: (2 * BG * stride + (stride - KR) * blockDim.x)
// floats, stride = register_stride(hidden, KR).
template <typename T, int KR, int BG>
__global__ void __launch_bounds__(256, 1) rnn_forward_registers(
    const T* __restrict__ projection0, const T* __restrict__ projection1, const T* __restrict__ bias_ih0,
    const T* __restrict__ bias_hh0, const T* __restrict__ bias_ih1, const T* __restrict__ bias_hh1,
    const T* __restrict__ weight0, const T* __restrict__ weight1, const T* __restrict__ h0_0,
    const T* __restrict__ h0_1, T* states0, T* states1, T* initial0, T* initial1, T* out, T* h_n0, T* h_n1,
    const int* __restrict__ lengths, int directions, int steps, int batch, int hidden, int groups, int relu) {
    rnn_xp::check_register_launch(directions, groups, hidden);
    const int direction = static_cast<int>(blockIdx.x) / groups;
    const int b0 = (static_cast<int>(blockIdx.x) % groups) * BG;
    const T* projection = direction ? projection1 : projection0;
    const T* h0 = direction ? h0_1 : h0_0;
    T* states = direction ? states1 : states0;
    T* initial = direction ? initial1 : initial0;
    T* h_n = direction ? h_n1 : h_n0;
    const int j = threadIdx.x;
    const int threads = static_cast<int>(blockDim.x);
    const int stride = rnn_xp::register_stride(hidden, KR);
    const size_t plane = static_cast<size_t>(batch) * hidden;
    const int out_stride = directions * hidden;
    extern __shared__ __align__(16) unsigned char shared_raw[];
    T* state = reinterpret_cast<T*>(shared_raw);  // 2 buffers x BG x stride
    T* far = state + 2 * BG * stride;

    T w[KR];
    rnn_xp::load_weights(direction ? weight1 : weight0, false, hidden, stride, w, far);
    for (int i = threadIdx.x; i < 2 * BG * stride; i += threads) {
        const int k = i % stride;
        const int b = b0 + (i / stride) % BG;
        const bool start = i < BG * stride && k < hidden && b < batch;
        const T value = start && h0 ? h0[static_cast<size_t>(b) * hidden + k] : T(0);
        state[i] = value;  // padding rows and columns of both buffers stay zero
        if (start) initial[static_cast<size_t>(b) * hidden + k] = value;
    }
    const bool unit = j < hidden;
    const T bias = unit ? rnn_xp::bias_of(direction ? bias_ih1 : bias_ih0, direction ? bias_hh1 : bias_hh0, j) : T(0);
    int length[BG];
    bool valid[BG], mine[BG];
    T projected[BG];
#pragma unroll
    for (int bg = 0; bg < BG; ++bg) {
        const int b = b0 + bg;
        mine[bg] = unit && b < batch;
        length[bg] = mine[bg] && lengths ? lengths[b] : steps;
        valid[bg] = !lengths || !mine[bg] || (length[bg] >= 1 && length[bg] <= steps);
        const int t = rnn_xp::time_index(0, steps, direction);
        projected[bg] = mine[bg] ? projection[t * plane + static_cast<size_t>(b) * hidden + j] : T(0);
    }
    __syncthreads();

    for (int step = 0; step < steps; ++step) {
        const int t = rnn_xp::time_index(step, steps, direction);
        const bool last = step == steps - 1;
        const T* previous = state + (step & 1) * BG * stride;
        T* current = state + ((step & 1) ^ 1) * BG * stride;
        T following[BG];  // the next step's projection, loaded now and used a step later
#pragma unroll
        for (int bg = 0; bg < BG; ++bg) {
            const size_t at = static_cast<size_t>(rnn_xp::time_index(last ? step : step + 1, steps, direction)) * plane +
                              static_cast<size_t>(b0 + bg) * hidden + j;
            following[bg] = mine[bg] && !last ? projection[at] : T(0);
        }
        T acc[BG];
        rnn_xp::dot_products<T, KR, BG>(w, far, previous, stride, threads, j, acc);
#pragma unroll
        for (int bg = 0; bg < BG; ++bg) {
            if (!mine[bg]) continue;
            const int b = b0 + bg;
            const bool in = t < length[bg];
            const T value =
                rnn_xp::forward_value(valid[bg], in, projected[bg] + acc[bg] + bias, previous[bg * stride + j], relu);
            current[bg * stride + j] = value;
            const size_t at = static_cast<size_t>(b) * hidden + j;
            states[t * plane + at] = value;
            if (out) out[(static_cast<size_t>(t) * batch + b) * out_stride + direction * hidden + j] =
                rnn_xp::output_value(valid[bg], in, value);
            if (last && h_n) h_n[at] = value;
            projected[bg] = following[bg];
        }
        __syncthreads();
    }
}

// Backward: thread c owns column c of W_hh (registers for rows k < KR), carries d loss / d h_t for its unit and
// samples in registers, and each step forms carry = g_t W_hh for its column (held on padding), then the next
// visited step's g = (grad_out + carry) * act'(h) (zero on padding) into grad_preact and the other shared buffer;
// grad_out and h of that step are loaded before the step's products.
// grad_out is (steps, batch, directions * hidden) or null; grad_h_n{0,1} (null: zeros) and grad_h0{0,1} are
// (batch, hidden). bias_partial{0,1}, where given, (groups, hidden): row `group` gets the sum of the block's g over
// its samples and steps (the bias gradient, less a sum over groups), in a fixed order.
template <typename T, int KR, int BG>
__global__ void __launch_bounds__(256, 1) rnn_backward_registers(
    const T* __restrict__ grad_out, const T* __restrict__ states0, const T* __restrict__ states1,
    const T* __restrict__ weight0, const T* __restrict__ weight1, const T* __restrict__ grad_h_n0,
    const T* __restrict__ grad_h_n1, T* grad_preact0, T* grad_preact1, T* grad_h0_0, T* grad_h0_1,
    T* bias_partial0, T* bias_partial1, const int* __restrict__ lengths, int directions, int steps, int batch,
    int hidden, int groups, int relu) {
    rnn_xp::check_register_launch(directions, groups, hidden);
    const int direction = static_cast<int>(blockIdx.x) / groups;
    const int b0 = (static_cast<int>(blockIdx.x) % groups) * BG;
    const T* states = direction ? states1 : states0;
    const T* grad_h_n = direction ? grad_h_n1 : grad_h_n0;
    T* grad_preact = direction ? grad_preact1 : grad_preact0;
    T* grad_h0 = direction ? grad_h0_1 : grad_h0_0;
    T* bias_partial = direction ? bias_partial1 : bias_partial0;
    const int c = threadIdx.x;
    const int threads = static_cast<int>(blockDim.x);
    const int stride = rnn_xp::register_stride(hidden, KR);
    const size_t plane = static_cast<size_t>(batch) * hidden;
    const int grad_stride = directions * hidden;
    const int column = direction * hidden + c;
    extern __shared__ __align__(16) unsigned char shared_raw[];
    T* gradient = reinterpret_cast<T*>(shared_raw);  // 2 buffers x BG x stride
    T* far = gradient + 2 * BG * stride;

    T w[KR];
    rnn_xp::load_weights(direction ? weight1 : weight0, true, hidden, stride, w, far);
    for (int i = threadIdx.x; i < 2 * BG * stride; i += threads) gradient[i] = T(0);
    __syncthreads();  // the zeroed buffers before the start below writes into one

    const bool unit = c < hidden;
    const auto order = [&](int step) { return rnn_xp::time_index(step, steps, 1 - direction); };
    int length[BG];
    bool valid[BG], mine[BG];
    T carry[BG];
    // Start: carry = grad_h_n; g at the first visited step.
#pragma unroll
    for (int bg = 0; bg < BG; ++bg) {
        const int b = b0 + bg;
        mine[bg] = unit && b < batch;
        length[bg] = mine[bg] && lengths ? lengths[b] : steps;
        valid[bg] = !lengths || !mine[bg] || (length[bg] >= 1 && length[bg] <= steps);
        carry[bg] = T(0);
        if (!mine[bg]) continue;
        const size_t at = static_cast<size_t>(b) * hidden + c;
        carry[bg] = !valid[bg] ? rnn_xp::quiet_nan(T(0)) : (grad_h_n ? grad_h_n[at] : T(0));
        const int first = order(0);
        const T g = !valid[bg] ? rnn_xp::quiet_nan(T(0))
                    : first < length[bg]
                        ? rnn_xp::through_activation(
                              rnn_xp::element_or_zero(grad_out, first, b, column, batch, grad_stride) + carry[bg],
                              states[first * plane + at], relu)
                        : T(0);
        grad_preact[first * plane + at] = g;
        gradient[bg * stride + c] = g;
    }
    __syncthreads();

    for (int step = 0; step < steps; ++step) {
        const int t = order(step);
        const bool last = step == steps - 1;
        const int next = last ? t : order(step + 1);
        const T* current = gradient + (step & 1) * BG * stride;
        T* written = gradient + ((step & 1) ^ 1) * BG * stride;
        // grad_out and h of the next visited step, which this step's epilogue needs: loaded before the products.
        T arrived[BG], state[BG];
#pragma unroll
        for (int bg = 0; bg < BG; ++bg) {
            const int b = b0 + bg;
            arrived[bg] = mine[bg] && !last ? rnn_xp::element_or_zero(grad_out, next, b, column, batch, grad_stride)
                                            : T(0);
            state[bg] = mine[bg] && !last ? states[next * plane + static_cast<size_t>(b) * hidden + c] : T(0);
        }
        T acc[BG];
        rnn_xp::dot_products<T, KR, BG>(w, far, current, stride, threads, c, acc);
#pragma unroll
        for (int bg = 0; bg < BG; ++bg) {
            if (!mine[bg]) continue;
            const int b = b0 + bg;
            if (t < length[bg]) carry[bg] = acc[bg];
            if (!valid[bg]) carry[bg] = rnn_xp::quiet_nan(T(0));
            const size_t at = static_cast<size_t>(b) * hidden + c;
            if (last) {
                grad_h0[at] = carry[bg];
            } else {
                const T g = !valid[bg] ? rnn_xp::quiet_nan(T(0))
                            : next < length[bg] ? rnn_xp::through_activation(arrived[bg] + carry[bg], state[bg], relu)
                                                : T(0);
                grad_preact[next * plane + at] = g;
                written[bg * stride + c] = g;
            }
        }
        __syncthreads();
    }
    // The bias gradient's part of this block: re-read from grad_preact (this thread's own writes, mostly still in L2)
    // rather than summed in the loop above, whose registers the weights need (at KR = 128 a running sum spilled).
    if (bias_partial && unit) {
        T sum = T(0);
        for (int bg = 0; bg < BG && b0 + bg < batch; ++bg) {
            for (int step = 0; step < steps; ++step) {
                sum += grad_preact[order(step) * plane + static_cast<size_t>(b0 + bg) * hidden + c];
            }
        }
        bias_partial[static_cast<size_t>(b0 / BG) * hidden + c] = sum;
    }
}

#ifdef RNN_XP_EXPLICIT_INSTANTIATION  // for the nvcc compile check; CuPy instantiates through name_expressions
#define RNN_XP_INSTANTIATE(KR, BG)                                                                                  \
    template __global__ void rnn_forward_registers<float, KR, BG>(                                                 \
        const float*, const float*, const float*, const float*, const float*, const float*, const float*,         \
        const float*, const float*, const float*, float*, float*, float*, float*, float*, float*, float*,         \
        const int*, int, int, int, int, int, int);                                                                 \
    template __global__ void rnn_backward_registers<float, KR, BG>(                                                \
        const float*, const float*, const float*, const float*, const float*, const float*, const float*, float*, \
        float*, float*, float*, float*, float*, const int*, int, int, int, int, int, int);
#define RNN_XP_INSTANTIATE_ALL(KR) \
    RNN_XP_INSTANTIATE(KR, 1)      \
    RNN_XP_INSTANTIATE(KR, 2)      \
    RNN_XP_INSTANTIATE(KR, 4)
RNN_XP_INSTANTIATE_ALL(32)
RNN_XP_INSTANTIATE_ALL(64)
RNN_XP_INSTANTIATE_ALL(128)
#undef RNN_XP_INSTANTIATE_ALL
#undef RNN_XP_INSTANTIATE
#endif
