// Per-step epilogues, for hidden sizes whose W_hh does not fit on chip across the SMs.
//
// There the recurrent product of a step is one cuBLAS GEMM over the whole batch (issued by the wrapper: the forward
// adds h_{t-1} W_hh^T into the projection of step t, beta = 1), and one of these kernels does everything else of
// the step in one pass: both biases, activation, length mask and the writes of the state, the output and h_n
// (forward); the carried gradient's mask and the next step's pre-activation gradient (backward). One thread per
// (sample, hidden unit). No atomics. Layouts and null pointers: see rnn_common.cuh.
#include "rnn_common.cuh"

// Step `step` of direction `direction` (t = its time index): states[t] = act(projection[t] + biases), where the
// GEMM has added h_{t-1} W_hh^T into projection[t] (nothing at a first step from h0 = 0). The first step also copies
// h0 (or zeros) into `initial`; the last writes h_n.
template <typename T>
__global__ void __launch_bounds__(256) rnn_forward_step(
    const T* __restrict__ projection, const T* __restrict__ bias_ih, const T* __restrict__ bias_hh,
    const T* __restrict__ h0, T* states, T* initial, T* out, T* h_n, const int* __restrict__ lengths, int direction,
    int directions, int step, int steps, int batch, int hidden, int relu) {
    const size_t at = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const size_t plane = static_cast<size_t>(batch) * hidden;
    if (at >= plane) return;
    const int b = static_cast<int>(at / hidden);
    const int j = static_cast<int>(at - static_cast<size_t>(b) * hidden);
    const int t = rnn_xp::time_index(step, steps, direction);
    T previous;
    if (step == 0) {
        previous = h0 ? h0[at] : T(0);
        initial[at] = previous;
    } else {
        previous = states[static_cast<size_t>(direction ? t + 1 : t - 1) * plane + at];
    }
    const bool valid = rnn_xp::valid_length(lengths, b, steps);
    const bool in = rnn_xp::inside(lengths, t, b);
    const T preactivation = projection[t * plane + at] + rnn_xp::bias_of(bias_ih, bias_hh, j);
    const T value = rnn_xp::forward_value(valid, in, preactivation, previous, relu);
    states[t * plane + at] = value;
    if (out) out[(static_cast<size_t>(t) * batch + b) * directions * hidden + direction * hidden + j] =
        rnn_xp::output_value(valid, in, value);
    if (step == steps - 1 && h_n) h_n[at] = value;
}

// One backward epilogue of direction `direction`, whose backward visits the forward's time indices in reverse:
// order(i) = time_index(i, steps, 1 - direction). `carry` (batch, hidden) holds d loss / d h and ends as grad_h0.
// Call `step` = 0 first (carry = grad_h_n), then `step` = i + 1 after the GEMM product = g_{order(i)} W_hh: carry
// becomes product where order(i) is inside the sample (held on padding). Then, while step < steps, the
// pre-activation gradient of the next visited step, grad_preact[order(step)] = (grad_out + carry) * act'(h),
// zero on padding. `bias_partial` (batch, hidden), where given, sums each of these gradients over the steps (the bias
// gradient, less a sum over the batch).
template <typename T>
__global__ void __launch_bounds__(256) rnn_backward_step(
    const T* __restrict__ grad_out, const T* __restrict__ states, const T* __restrict__ product,
    const T* __restrict__ grad_h_n, T* carry, T* grad_preact, T* bias_partial, const int* __restrict__ lengths,
    int direction, int directions, int step, int steps, int batch, int hidden, int relu) {
    const size_t at = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const size_t plane = static_cast<size_t>(batch) * hidden;
    if (at >= plane) return;
    const int b = static_cast<int>(at / hidden);
    const int c = static_cast<int>(at - static_cast<size_t>(b) * hidden);
    const bool valid = rnn_xp::valid_length(lengths, b, steps);
    T value;
    if (step == 0) {
        value = grad_h_n ? grad_h_n[at] : T(0);
    } else {
        value = rnn_xp::inside(lengths, rnn_xp::time_index(step - 1, steps, 1 - direction), b) ? product[at]
                                                                                               : carry[at];
    }
    if (!valid) value = rnn_xp::quiet_nan(T(0));
    carry[at] = value;
    if (step < steps) {
        const int next = rnn_xp::time_index(step, steps, 1 - direction);
        const T arrived = rnn_xp::element_or_zero(grad_out, next, b, direction * hidden + c, batch, directions * hidden);
        const T g = !valid ? rnn_xp::quiet_nan(T(0))
                    : rnn_xp::inside(lengths, next, b)
                        ? rnn_xp::through_activation(arrived + value, states[next * plane + at], relu)
                        : T(0);
        grad_preact[next * plane + at] = g;
        if (bias_partial) bias_partial[at] = step == 0 ? g : bias_partial[at] + g;
    }
}

#ifdef RNN_XP_EXPLICIT_INSTANTIATION  // for the nvcc compile check; CuPy instantiates through name_expressions
#define RNN_XP_INSTANTIATE(T)                                                                                      \
    template __global__ void rnn_forward_step<T>(const T*, const T*, const T*, const T*, T*, T*, T*, T*,          \
                                                 const int*, int, int, int, int, int, int, int);                   \
    template __global__ void rnn_backward_step<T>(const T*, const T*, const T*, const T*, T*, T*, T*, const int*, \
                                                  int, int, int, int, int, int, int);
RNN_XP_INSTANTIATE(float)
RNN_XP_INSTANTIATE(double)
#undef RNN_XP_INSTANTIATE
#endif
