// Per-step epilogues, for hidden sizes whose W_hh does not fit on chip across the SMs.
//
// There the recurrent product of a step is one cuBLAS GEMM over the whole batch (issued by the wrapper), and one
// of these kernels does everything else of the step in one pass: both biases, activation, length mask and state
// write (forward); the carried gradient's mask and the next step's pre-activation gradient (backward). One thread
// per (sample, hidden unit). No atomics.
#include "rnn_common.cuh"

// states[t] holds x_t W_ih^T on entry and h_t on exit; recurrent = h_{t-1} W_hh^T; previous = h_{t-1}.
template <typename T>
__global__ void __launch_bounds__(256) rnn_forward_step(T* states, const T* __restrict__ recurrent,
                                                        const T* __restrict__ previous, const T* __restrict__ bias,
                                                        int has_bias, const int* __restrict__ lengths,
                                                        int has_lengths, int t, int batch, int hidden, int relu) {
    const size_t at = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (at >= static_cast<size_t>(batch) * hidden) return;
    const int b = static_cast<int>(at / hidden);
    const int j = static_cast<int>(at - static_cast<size_t>(b) * hidden);
    T* out = states + static_cast<size_t>(t) * batch * hidden + at;
    *out = rnn_xp::inside(lengths, has_lengths, t, b)
               ? rnn_xp::activate(*out + recurrent[at] + (has_bias ? bias[j] : T(0)), relu)
               : previous[at];
}

// One backward step's epilogue. With has_product, product = g_t W_hh for the step t just visited and the carried
// gradient becomes product (carry is held on padding); then, with has_next, the pre-activation gradient of the
// next visited step: grad_preact[next] = (grad_states[next] + carry) * act'(states[next]), zero on padding.
template <typename T>
__global__ void __launch_bounds__(256) rnn_backward_step(
    const T* __restrict__ grad_states, const T* __restrict__ states, const T* __restrict__ product, T* carry,
    T* grad_preact, const int* __restrict__ lengths, int has_lengths, int has_product, int t, int has_next,
    int next, int batch, int hidden, int relu) {
    const size_t at = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (at >= static_cast<size_t>(batch) * hidden) return;
    const int b = static_cast<int>(at / hidden);
    T value = carry[at];
    if (has_product && rnn_xp::inside(lengths, has_lengths, t, b)) {
        value = product[at];
        carry[at] = value;
    }
    if (has_next) {
        const size_t at_next = static_cast<size_t>(next) * batch * hidden + at;
        grad_preact[at_next] = rnn_xp::inside(lengths, has_lengths, next, b)
                                   ? rnn_xp::through_activation(grad_states[at_next] + value, states[at_next], relu)
                                   : T(0);
    }
}

#ifdef RNN_XP_EXPLICIT_INSTANTIATION  // for the nvcc compile check; CuPy instantiates through name_expressions
template __global__ void rnn_forward_step<float>(float*, const float*, const float*, const float*, int, const int*,
                                                 int, int, int, int, int);
template __global__ void rnn_forward_step<double>(double*, const double*, const double*, const double*, int,
                                                  const int*, int, int, int, int, int);
template __global__ void rnn_backward_step<float>(const float*, const float*, const float*, float*, float*,
                                                  const int*, int, int, int, int, int, int, int, int);
template __global__ void rnn_backward_step<double>(const double*, const double*, const double*, double*, double*,
                                                   const int*, int, int, int, int, int, int, int, int);
#endif
