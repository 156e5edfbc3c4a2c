"""Atomic operations on int64 arrays inside numba kernels, and a cycle counter, for threads that share the steps of
one recurrence (:func:`rnn_xp.loops._kernels.forward_rows_shared`). numba has no atomics for CPU code; these
intrinsics emit LLVM's atomic instructions and intrinsics. Importing this module imports numba."""

from __future__ import annotations

import platform
from typing import Any

import llvmlite.ir as ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}


def _pointer(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    view = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, view, [index])


def _load_acquire(typingctx: Any, array: Any, index: Any) -> Any:
    """``array[index]`` (int64, 1-D), read with acquire ordering: what another thread wrote before its release of
    this value is visible after this read."""
    signature = types.int64(array, types.intp)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.load_atomic(_pointer(context, builder, sig.args[0], *args), "acquire", 8)

    return signature, codegen


def _raise_to(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """``array[index] = max(array[index], value)`` (int64) in one atomic step, with release ordering (what this
    thread wrote before is visible to a thread that reads the new value with :func:`load_acquire`)."""
    signature = types.void(array, types.intp, types.int64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        data, index_value, raised = args
        builder.atomic_rmw("max", _pointer(context, builder, sig.args[0], data, index_value), raised, "acq_rel")
        return context.get_dummy_value()

    return signature, codegen


def _spin_pause(typingctx: Any) -> Any:
    """The spin-wait hint (x86 ``pause``, through LLVM's intrinsic: numba's JIT cannot assemble inline asm);
    nothing elsewhere."""
    signature = types.void()

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if _X86:
            pause = ir.FunctionType(ir.VoidType(), [])
            builder.call(cgutils.get_or_insert_function(builder.module, pause, "llvm.x86.sse2.pause"), [])
        return context.get_dummy_value()

    return signature, codegen


def _cycles(typingctx: Any) -> Any:
    """The CPU's cycle counter (``llvm.readcyclecounter``: the TSC on x86), for waits measured in time."""
    signature = types.int64()

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        counter = ir.FunctionType(ir.IntType(64), [])
        return builder.call(cgutils.get_or_insert_function(builder.module, counter, "llvm.readcyclecounter"), [])

    return signature, codegen


# Typed as Any: numba's intrinsic wrapper takes the typing context itself when called from a kernel.
load_acquire: Any = intrinsic(_load_acquire)
raise_to: Any = intrinsic(_raise_to)
spin_pause: Any = intrinsic(_spin_pause)
cycles: Any = intrinsic(_cycles)
