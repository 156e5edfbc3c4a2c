// Shared device helpers for the rnn_xp recurrence kernels (float and double).
//
// Layout conventions (all arrays C-contiguous):
//   projection            (steps, batch, hidden): x_t W_ih^T, read only
//   states                (steps, batch, hidden): h_t, written by the forward
//   initial               (batch, hidden): where the forward copies h0 (zeros without one), so that the state before
//                         every step lies in one array beside `states` (the weight gradient is then one GEMM)
//   out                   (steps, batch, directions * hidden): direction d in columns [d*hidden, (d+1)*hidden), zero
//                         past a sample's length
//   weight_hh             (hidden, hidden), row j = the weights into hidden unit j
//   h0, h_n, carry        (batch, hidden)
//   lengths               (batch,) int32
// A null pointer stands for what is absent: no bias, h0 = 0, grad_h_n = 0, grad_out = 0, no lengths (every sample
// runs all steps), no `out` / `h_n` to write.
// Direction 1 visits t = steps-1 .. 0; a sample's steps at t >= lengths[b] are padding: the state is held.
// A length outside [1, steps] (a CuPy lengths array is not read back to be checked) makes every state, output, h_n
// and gradient of that sample NaN.
#pragma once

namespace rnn_xp {

constexpr int kWarp = 32;

__device__ __forceinline__ float tanh_of(float z) { return tanhf(z); }
__device__ __forceinline__ double tanh_of(double z) { return tanh(z); }

__device__ __forceinline__ float quiet_nan(float) { return nanf(""); }
__device__ __forceinline__ double quiet_nan(double) { return nan(""); }

template <typename T>
__device__ __forceinline__ T activate(T z, int relu) {
    return relu ? (z <= T(0) ? T(0) : z) : tanh_of(z);  // NaN stays NaN, as in torch and NumPy
}

// The pre-activation gradient from the gradient `arrived` at the activation's output y: selected, not multiplied,
// for relu, so an inf arriving at a unit that is off gives 0 (as torch), not NaN.
template <typename T>
__device__ __forceinline__ T through_activation(T arrived, T y, int relu) {
    return relu ? (y <= T(0) ? T(0) : arrived) : arrived * (T(1) - y * y);
}

// b_ih[j] + b_hh[j], either absent (null) read as zero: the same sum the NumPy loop adds.
template <typename T>
__device__ __forceinline__ T bias_of(const T* bias_ih, const T* bias_hh, int j) {
    return (bias_ih ? bias_ih[j] : T(0)) + (bias_hh ? bias_hh[j] : T(0));
}

// A load that bypasses L1: the value was written by another SM since this SM last looked, and L1 is not
// coherent across SMs.
template <typename T>
__device__ __forceinline__ T load_coherent(const T* address) {
    return __ldcg(address);
}

__device__ __forceinline__ int time_index(int step, int steps, int direction) {
    return direction ? steps - 1 - step : step;
}

__device__ __forceinline__ bool inside(const int* lengths, int t, int b) {
    return !lengths || t < lengths[b];
}

__device__ __forceinline__ bool valid_length(const int* lengths, int b, int steps) {
    return !lengths || (lengths[b] >= 1 && lengths[b] <= steps);
}

// Element (t, b, column) of a (steps, batch, stride) array, or zero where the array is absent.
template <typename T>
__device__ __forceinline__ T element_or_zero(const T* array, int t, int b, int column, int batch, int stride) {
    return array ? array[(static_cast<size_t>(t) * batch + b) * stride + column] : T(0);
}

// The forward's value of unit j of sample b at step t, given the pre-activation sum and the held state.
template <typename T>
__device__ __forceinline__ T forward_value(bool valid, bool in, T preactivation, T held, int relu) {
    return !valid ? quiet_nan(T(0)) : (in ? activate(preactivation, relu) : held);
}

// What the forward writes to `out` for that value: zero on padding.
template <typename T>
__device__ __forceinline__ T output_value(bool valid, bool in, T value) {
    return !valid ? quiet_nan(T(0)) : (in ? value : T(0));
}

}  // namespace rnn_xp
