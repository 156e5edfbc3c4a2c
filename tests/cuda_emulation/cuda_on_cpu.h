// CUDA on CPU threads: just enough of CUDA's built-ins for g++ to compile rnn_xp's unmodified .cu kernels and run
// them on the host, so their logic is tested where no GPU is (CI, a laptop).
//
// Every CUDA thread is a fiber (ucontext) with its own stack; one OS thread runs them all, switching only where a
// GPU thread could be overtaken by the others: at __syncthreads (a real barrier over the block's threads) and at
// every atomic (so a block that spins on a counter lets the blocks it waits for run). Blocks run concurrently in
// that sense, as a cooperative launch's blocks do. `extern __shared__` memory is one global buffer that holds the
// running block's bytes: it is swapped in and out when the scheduler moves from one block's fibers to another's.
// With a seed, the order in which a block's threads run between barriers is shuffled, and each round lets only a
// random subset of the blocks run, each as far as it can (until its threads wait at an atomic or finish): a
// missing barrier, or a missing wait for another block, then shows up as a wrong result instead of passing by luck.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) double2 {
    double x, y;
};

using std::max;
using std::min;
using std::tanh;

// The running block's dynamic shared memory (see the header comment); the kernels declare it `extern`.
extern "C" {
extern __attribute__((aligned(16))) unsigned char shared_raw[];
}

namespace emu {

constexpr std::size_t kSharedCapacity = 256 * 1024;
constexpr std::size_t kStackBytes = 32 * 1024;

// kPolling: yielded at an atomic (typically spinning on a counter); it runs again at its block's next turn.
enum class State { kRunnable, kAtBarrier, kPolling, kDone };

struct Fiber {
    ucontext_t context{};
    dim3 thread;
    unsigned int block = 0;
    State state = State::kRunnable;
    std::unique_ptr<unsigned char[]> stack;  // left uninitialised: only the pages a thread touches are mapped
};

struct Launch {
    dim3 grid, block;
    unsigned int threads_per_block = 0;
    std::size_t shared_bytes = 0;
    std::vector<Fiber> fibers;
    std::vector<std::vector<unsigned char>> shared;  // each block's shared memory while it is not running
    std::vector<unsigned int> arrived;               // per block: threads waiting at the current barrier
    int resident_block = -1;                         // whose bytes are in shared_raw now
    std::size_t current = 0;
    ucontext_t scheduler{};
    void (*body)(void*) = nullptr;
    void* body_argument = nullptr;
    std::mt19937 shuffle;
    bool shuffled = false;
    std::string error;  // the first __trap() of the launch
};

inline Launch*& active() {
    static Launch* launch = nullptr;
    return launch;
}

inline Fiber& self() { return active()->fibers[active()->current]; }

// Back to the scheduler; the fiber resumes here when it is next picked.
inline void yield() { swapcontext(&self().context, &active()->scheduler); }

inline void syncthreads() {
    Launch& launch = *active();
    Fiber& fiber = self();
    fiber.state = State::kAtBarrier;
    if (++launch.arrived[fiber.block] == launch.threads_per_block) {
        launch.arrived[fiber.block] = 0;
        const std::size_t first = static_cast<std::size_t>(fiber.block) * launch.threads_per_block;
        for (std::size_t i = first; i < first + launch.threads_per_block; ++i) launch.fibers[i].state = State::kRunnable;
    }
    yield();
}

inline void entry() {
    Launch& launch = *active();
    try {
        launch.body(launch.body_argument);
    } catch (const std::exception& failure) {  // __trap(): finish this thread, report after the launch
        if (launch.error.empty()) launch.error = failure.what();
    }
    self().state = State::kDone;
    swapcontext(&self().context, &launch.scheduler);
}

inline void make_resident(Launch& launch, unsigned int block) {
    if (launch.resident_block == static_cast<int>(block)) return;
    if (launch.resident_block >= 0) {
        std::memcpy(launch.shared[launch.resident_block].data(), shared_raw, launch.shared_bytes);
    }
    std::memcpy(shared_raw, launch.shared[block].data(), launch.shared_bytes);
    launch.resident_block = static_cast<int>(block);
}

// Run `body(argument)` as every thread of a grid; returns when all have finished. Throws on a deadlock (every
// unfinished thread waits at a barrier that cannot complete).
inline void run(dim3 grid, dim3 block, std::size_t shared_bytes, void (*body)(void*), void* argument, unsigned seed) {
    if (shared_bytes > kSharedCapacity) throw std::runtime_error("dynamic shared memory over the emulator's capacity");
    if (grid.y != 1 || grid.z != 1 || block.y != 1 || block.z != 1) throw std::runtime_error("1-D launches only");
    Launch launch;
    launch.grid = grid;
    launch.block = block;
    launch.threads_per_block = block.x;
    launch.shared_bytes = shared_bytes;
    launch.body = body;
    launch.body_argument = argument;
    launch.shuffle.seed(seed);
    launch.shuffled = seed != 0;
    const std::size_t total = static_cast<std::size_t>(grid.x) * block.x;
    launch.fibers.resize(total);
    launch.shared.assign(grid.x, std::vector<unsigned char>(shared_bytes, 0xA5));  // not zero: uninitialised
    launch.arrived.assign(grid.x, 0);
    active() = &launch;
    for (std::size_t i = 0; i < total; ++i) {
        Fiber& fiber = launch.fibers[i];
        fiber.block = static_cast<unsigned int>(i / block.x);
        fiber.thread.x = static_cast<unsigned int>(i % block.x);
        fiber.stack.reset(new unsigned char[kStackBytes]);
        getcontext(&fiber.context);
        fiber.context.uc_stack.ss_sp = fiber.stack.get();
        fiber.context.uc_stack.ss_size = kStackBytes;
        fiber.context.uc_link = nullptr;
        makecontext(&fiber.context, entry, 0);
    }
    std::vector<std::size_t> order(block.x);
    std::vector<unsigned int> blocks(grid.x);
    std::bernoulli_distribution coin(0.5);
    constexpr long kMaxRounds = 50'000'000;
    // One turn of block b: run its threads, through barriers, until none is runnable; true if any ran.
    const auto turn = [&](unsigned int b) {
        const std::size_t first = static_cast<std::size_t>(b) * block.x;
        for (std::size_t i = first; i < first + block.x; ++i) {
            if (launch.fibers[i].state == State::kPolling) launch.fibers[i].state = State::kRunnable;
        }
        bool ran = false, again = true;
        while (again) {
            again = false;
            for (std::size_t i = 0; i < block.x; ++i) order[i] = first + i;
            if (launch.shuffled) std::shuffle(order.begin(), order.end(), launch.shuffle);
            for (std::size_t index : order) {
                if (launch.fibers[index].state != State::kRunnable) continue;
                make_resident(launch, b);
                launch.current = index;
                swapcontext(&launch.scheduler, &launch.fibers[index].context);
                ran = again = true;
            }
        }
        return ran;
    };
    for (long round = 0;; ++round) {
        if (round == kMaxRounds) {
            active() = nullptr;
            throw std::runtime_error("no thread finished after many rounds: a wait that never completes?");
        }
        blocks.clear();
        for (unsigned int b = 0; b < grid.x; ++b) {
            if (!launch.shuffled || coin(launch.shuffle)) blocks.push_back(b);
        }
        if (launch.shuffled) std::shuffle(blocks.begin(), blocks.end(), launch.shuffle);
        bool progressed = false;
        for (unsigned int b : blocks) progressed |= turn(b);
        bool unfinished = false;
        for (const Fiber& fiber : launch.fibers) unfinished |= fiber.state != State::kDone;
        if (!unfinished) break;
        if (!launch.error.empty()) {  // a trapped kernel: the others may wait for it forever
            active() = nullptr;
            throw std::runtime_error(launch.error);
        }
        if (!progressed && blocks.size() == grid.x) {
            active() = nullptr;
            throw std::runtime_error("deadlock: every unfinished thread waits at a barrier");
        }
    }
    active() = nullptr;
}

// Argument unpacking for a kernel launched with cudaLaunchKernel-style `void** args`.
template <typename... A>
struct Call {
    void (*kernel)(A...);
    void** args;
};

template <typename... A, std::size_t... I>
void invoke(Call<A...>* call, std::index_sequence<I...>) {
    call->kernel(*static_cast<std::remove_reference_t<A>*>(call->args[I])...);
}

template <typename... A>
void trampoline(void* argument) {
    invoke(static_cast<Call<A...>*>(argument), std::index_sequence_for<A...>{});
}

template <typename... A>
void launch(void (*kernel)(A...), dim3 grid, dim3 block, std::size_t shared_bytes, void** args, unsigned seed) {
    Call<A...> call{kernel, args};
    run(grid, block, shared_bytes, &trampoline<A...>, &call, seed);
}

// One letter per parameter, so the Python launcher can check what it passes: p pointer, i int, u unsigned.
template <typename T>
constexpr char kind() {
    if constexpr (std::is_pointer_v<T>) return 'p';
    else if constexpr (std::is_same_v<T, int>) return 'i';
    else if constexpr (std::is_same_v<T, unsigned int>) return 'u';
    else return '?';
}

template <typename... A>
const char* signature(void (*)(A...)) {
    static const std::string text{kind<A>()...};
    return text.c_str();
}

}  // namespace emu

#define threadIdx (::emu::self().thread)
#define blockIdx (::dim3{::emu::self().block, 0, 0})
#define blockDim (::emu::active()->block)
#define gridDim (::emu::active()->grid)

inline void __syncthreads() { ::emu::syncthreads(); }
[[noreturn]] inline void __trap() { throw std::runtime_error("__trap(): the kernel refused its launch"); }
inline void __threadfence() {}

// Atomics are where a spinning thread must let the others run.
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) {
    const unsigned int old = *address;
    *address = old + value;
    ::emu::self().state = ::emu::State::kPolling;
    ::emu::yield();
    return old;
}

inline unsigned int atomicExch(unsigned int* address, unsigned int value) {
    const unsigned int old = *address;
    *address = value;
    ::emu::self().state = ::emu::State::kPolling;
    ::emu::yield();
    return old;
}

template <typename T>
inline T __ldcg(const T* address) {
    return *address;
}
