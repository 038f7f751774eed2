"""Eight-float vectors for numba kernels: a type held in one AVX register and four operations on it.

Numba has no vector type, and LLVM keeps a loop's accumulators in memory when they are array elements or
tuples (a hand-blocked matrix product in plain numba ran at 9 GFLOP/s here, against MKL's 100). A value of
``f32x8`` is an LLVM ``<8 x float>``, so a loop-carried accumulator stays in a register (or two, on CPUs with
128-bit vectors), and ``fma8`` is one fused multiply-add instruction where the CPU has one (a multiply and an
add elsewhere: ``llvm.fmuladd``).
Imported only by the kernels (numba compiles on first use).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

_VEC = ir.VectorType(ir.FloatType(), 8)


class F32x8(types.Type):
    """Numba's name for eight float32 lanes."""

    def __init__(self) -> None:
        super().__init__(name="f32x8")


f32x8 = F32x8()


@register_model(F32x8)
class _F32x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type) -> None:
        super().__init__(dmm, fe_type, _VEC)


def _lanes(context, builder, array_type, array, index):
    """Pointer to the eight float32 elements of a contiguous 1-d array from ``index`` on (unchecked)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _VEC.as_pointer())


def _check_array(array) -> None:
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C" and array.dtype == types.float32):
        raise TypeError(f"f32x8 loads and stores need a contiguous 1-d float32 array, not {array}")


@intrinsic
def load8(_typingctx, array, index):
    """``array[index:index + 8]`` as one vector (no bounds check)."""
    _check_array(array)

    def codegen(context, builder, sig, args):
        return builder.load(_lanes(context, builder, sig.args[0], args[0], args[1]), align=4)

    return f32x8(array, index), codegen


@intrinsic
def store8(_typingctx, array, index, value):
    """``array[index:index + 8] = value`` (no bounds check)."""
    _check_array(array)

    def codegen(context, builder, sig, args):
        builder.store(args[2], _lanes(context, builder, sig.args[0], args[0], args[1]), align=4)
        return context.get_dummy_value()

    return types.void(array, index, value), codegen


@intrinsic
def zero8(_typingctx):
    """Eight zeros."""

    def codegen(_context, _builder, _sig, _args):
        return ir.Constant(_VEC, [0.0] * 8)

    return f32x8(), codegen


@intrinsic
def fma8(_typingctx, scalar, vector, acc):
    """``acc + scalar * vector``, the float32 scalar broadcast to every lane (fused where the CPU can)."""
    if scalar != types.float32:
        raise TypeError(f"fma8 takes a float32 scalar, not {scalar}")

    def codegen(_context, builder, _sig, args):
        i32 = ir.IntType(32)
        first = builder.insert_element(ir.Constant(_VEC, ir.Undefined), args[0], ir.Constant(i32, 0))
        splat = builder.shuffle_vector(first, ir.Constant(_VEC, ir.Undefined), ir.Constant(ir.VectorType(i32, 8), [0] * 8))
        muladd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3), "llvm.fmuladd.v8f32")
        return builder.call(muladd, [splat, args[1], args[2]])

    return f32x8(types.float32, vector, acc), codegen


__all__ = ["f32x8", "fma8", "load8", "store8", "zero8"]
