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
constexpr int kTile = 4;  // each lane accumulates a kTile x kTile register tile (batch rows x hidden rows)

__device__ __forceinline__ float tanh_of(float z) { return tanhf(z); }
__device__ __forceinline__ double tanh_of(double z) { return tanh(z); }

template <typename T>
__device__ __forceinline__ T activate(T z, int relu) {
    return relu ? (z > T(0) ? z : T(0)) : tanh_of(z);
}

// d act / d z written through the activation's output y.
template <typename T>
__device__ __forceinline__ T activation_slope(T y, int relu) {
    return relu ? (y > T(0) ? T(1) : T(0)) : T(1) - y * y;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    }
    return value;
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

// out[bi][ri] = sum_k left[bi][k] * right[ri][k] for kTile rows of `left` (stride `stride`) and kTile rows of
// `right`, each lane covering k = lane, lane + 32, ...; rows past `left_rows`/`right_rows` read as zero.
// Returns the sums in every lane (butterfly reduction), in a fixed order, so results are bit-reproducible.
template <typename T>
__device__ __forceinline__ void tile_dot(const T* left, int left_rows, const T* right, int right_rows, int length,
                                         int stride, int lane, T (&out)[kTile][kTile]) {
#pragma unroll
    for (int bi = 0; bi < kTile; ++bi) {
#pragma unroll
        for (int ri = 0; ri < kTile; ++ri) out[bi][ri] = T(0);
    }
    for (int k = lane; k < length; k += kWarp) {
        T a[kTile], w[kTile];
#pragma unroll
        for (int i = 0; i < kTile; ++i) {
            a[i] = i < left_rows ? left[i * stride + k] : T(0);
            w[i] = i < right_rows ? right[i * stride + k] : T(0);
        }
#pragma unroll
        for (int bi = 0; bi < kTile; ++bi) {
#pragma unroll
            for (int ri = 0; ri < kTile; ++ri) out[bi][ri] += a[bi] * w[ri];
        }
    }
#pragma unroll
    for (int bi = 0; bi < kTile; ++bi) {
#pragma unroll
        for (int ri = 0; ri < kTile; ++ri) out[bi][ri] = warp_sum(out[bi][ri]);
    }
}

// Lane l < kTile*kTile owns element (l / kTile, l % kTile) of a tile that every lane holds after tile_dot; this
// picks it with static indices only, so the tile stays in registers.
template <typename T>
__device__ __forceinline__ T tile_element(const T (&sums)[kTile][kTile], int lane) {
    T mine = T(0);
#pragma unroll
    for (int i = 0; i < kTile; ++i) {
#pragma unroll
        for (int j = 0; j < kTile; ++j) mine = (lane == i * kTile + j) ? sums[i][j] : mine;
    }
    return mine;
}

}  // namespace rnn_xp
