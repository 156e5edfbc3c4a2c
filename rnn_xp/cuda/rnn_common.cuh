// Shared device helpers for the rnn_xp recurrence kernels (float and double).
//
// Layout conventions (all arrays C-contiguous):
//   states / projections  (steps, batch, hidden)
//   weight_hh             (hidden, hidden), row j = the weights into hidden unit j
//   h0, carry             (batch, hidden)
//   lengths               (batch,) int32, every value in [1, steps]
// Direction 1 visits t = steps-1 .. 0; a sample's steps at t >= lengths[b] are padding: the state is held.
#pragma once

namespace rnn_xp {

constexpr int kWarp = 32;

__device__ __forceinline__ float tanh_of(float z) { return tanhf(z); }
__device__ __forceinline__ double tanh_of(double z) { return tanh(z); }

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

// A load that bypasses L1: the value was written by another SM since this SM last looked, and L1 is not
// coherent across SMs.
template <typename T>
__device__ __forceinline__ T load_coherent(const T* address) {
    return __ldcg(address);
}

__device__ __forceinline__ int time_index(int step, int steps, int direction) {
    return direction ? steps - 1 - step : step;
}

__device__ __forceinline__ bool inside(const int* lengths, int has_lengths, int t, int b) {
    return !has_lengths || t < lengths[b];
}

}  // namespace rnn_xp
