"""Vector loads and stores for the CUDA update kernels.

Each thread of an update kernel handles ``VEC`` consecutive elements per
trip: one vector load per array (128 bits for float32), all loads before any
store, then one vector store per array. Loads and stores go through the
intrinsics here, which index with the unsigned element offset directly (no
negative-index wrap-around code) and read the gradient through the read-only
(non-coherent) cache path, ``ld.global.nc``.

Every function is plain Python as well (its body), which is what runs under
the CUDA simulator; the ``@overload`` is what the compiler inlines.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ..codecs import decode, encode

VEC = 4
"""Elements per thread per trip."""

def _ptx_type(dtype) -> tuple[str, str]:
    if isinstance(dtype, types.Float):
        return ("f32", "f") if dtype.bitwidth == 32 else ("f64", "d")
    return {8: ("u8", "r"), 16: ("u16", "h"), 32: ("u32", "r"), 64: ("u64", "l")}[dtype.bitwidth]


def _element_pointer(context, builder, array_type, array, base):
    ary = context.make_array(array_type)(context, builder, array)
    return builder.gep(ary.data, [base])


def _alignment(dtype) -> int:
    return min(16, VEC * dtype.bitwidth // 8)


@intrinsic
def _load_vector(typingctx, array, base):
    signature = types.UniTuple(array.dtype, VEC)(array, base)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        element = context.get_data_type(array_type.dtype)
        pointer = _element_pointer(context, builder, array_type, args[0], args[1])
        vector = builder.load(builder.bitcast(pointer, ir.VectorType(element, VEC).as_pointer()),
                              align=_alignment(array_type.dtype))
        items = [builder.extract_element(vector, ir.Constant(ir.IntType(32), k)) for k in range(VEC)]
        return context.make_tuple(builder, sig.return_type, items)

    return signature, codegen


@intrinsic
def _load_vector_readonly(typingctx, array, base):
    signature = types.UniTuple(array.dtype, VEC)(array, base)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        dtype = array_type.dtype
        element = context.get_data_type(dtype)
        ptx_type, constraint = _ptx_type(dtype)
        # At most 128 bits per instruction: float64 takes two v2 loads.
        per_load = max(1, min(VEC, 128 // dtype.bitwidth))
        items = []
        for start in range(0, VEC, per_load):
            pointer = _element_pointer(context, builder, array_type, args[0],
                                       builder.add(args[1], ir.Constant(args[1].type, start)))
            address = builder.ptrtoint(pointer, ir.IntType(64))
            outputs = ", ".join(f"${k}" for k in range(per_load))
            asm_type = ir.FunctionType(ir.LiteralStructType([element] * per_load), [ir.IntType(64)])
            width = f".v{per_load}" if per_load > 1 else ""
            text = ("{ .reg .u64 %address; cvta.to.global.u64 %address, $" + str(per_load) + "; "
                    f"ld.global.nc{width}.{ptx_type} {{{outputs}}}, [%address]; }}")
            constraints = ",".join([f"={constraint}"] * per_load + ["l"])
            loaded = builder.call(ir.InlineAsm(asm_type, text, constraints), [address])
            items += [builder.extract_value(loaded, k) for k in range(per_load)]
        return context.make_tuple(builder, sig.return_type, items)

    return signature, codegen


@intrinsic
def _store_vector(typingctx, array, base, values):
    signature = types.void(array, base, values)

    def codegen(context, builder, sig, args):
        array_type, _, values_type = sig.args
        element = context.get_data_type(array_type.dtype)
        vector = ir.Constant(ir.VectorType(element, VEC), ir.Undefined)
        for k in range(VEC):
            x = context.cast(builder, builder.extract_value(args[2], k), values_type[k], array_type.dtype)
            vector = builder.insert_element(vector, x, ir.Constant(ir.IntType(32), k))
        pointer = _element_pointer(context, builder, array_type, args[0], args[1])
        builder.store(vector, builder.bitcast(pointer, ir.VectorType(element, VEC).as_pointer()),
                      align=_alignment(array_type.dtype))
        return context.get_dummy_value()

    return signature, codegen


def load_vector(storage, base):
    """The ``VEC`` decoded values of ``storage[base:base + VEC]`` (``base`` a
    multiple of ``VEC``, the storage aligned)."""
    return tuple(decode(storage, storage[base + k]) for k in range(VEC))


def load_vector_readonly(storage, base):
    """:func:`load_vector` through the read-only cache (for the gradient)."""
    return load_vector(storage, base)


def store_vector(storage, base, values):
    """Encode and store ``VEC`` values at ``storage[base:base + VEC]``."""
    for k in range(VEC):
        storage[base + k] = encode(storage, values[k])


@overload(load_vector)
def _load_vector_impl(storage, base):
    def impl(storage, base):
        raw = _load_vector(storage, base)
        return (decode(storage, raw[0]), decode(storage, raw[1]), decode(storage, raw[2]), decode(storage, raw[3]))

    return impl


@overload(load_vector_readonly)
def _load_vector_readonly_impl(storage, base):
    def impl(storage, base):
        raw = _load_vector_readonly(storage, base)
        return (decode(storage, raw[0]), decode(storage, raw[1]), decode(storage, raw[2]), decode(storage, raw[3]))

    return impl


@overload(store_vector)
def _store_vector_impl(storage, base, values):
    def impl(storage, base, values):
        _store_vector(storage, base, (encode(storage, values[0]), encode(storage, values[1]),
                                      encode(storage, values[2]), encode(storage, values[3])))

    return impl


def load_states_vector(states, base):
    """``load_vector`` of every storage in the tuple ``states``."""
    return tuple(load_vector(s, base) for s in states)


def lane(vectors, k):
    """Element ``k`` of each vector: the state tuple of one element."""
    return tuple(v[k] for v in vectors)


def store_states_vector(states, base, s0, s1, s2, s3):
    """Store the state tuples of four consecutive elements (one vector store per storage)."""
    for j, storage in enumerate(states):
        store_vector(storage, base, (s0[j], s1[j], s2[j], s3[j]))


@overload(load_states_vector)
def _load_states_vector(states, base):
    n = len(states)
    if n == 0:
        return lambda states, base: ()
    if n == 1:
        return lambda states, base: (load_vector(states[0], base),)
    if n == 2:
        return lambda states, base: (load_vector(states[0], base), load_vector(states[1], base))
    if n == 3:
        return lambda states, base: (load_vector(states[0], base), load_vector(states[1], base),
                                     load_vector(states[2], base))
    if n == 4:
        return lambda states, base: (load_vector(states[0], base), load_vector(states[1], base),
                                     load_vector(states[2], base), load_vector(states[3], base))
    return None


@overload(lane)
def _lane(vectors, k):
    n = len(vectors)
    if n == 0:
        return lambda vectors, k: ()
    if n == 1:
        return lambda vectors, k: (vectors[0][k],)
    if n == 2:
        return lambda vectors, k: (vectors[0][k], vectors[1][k])
    if n == 3:
        return lambda vectors, k: (vectors[0][k], vectors[1][k], vectors[2][k])
    if n == 4:
        return lambda vectors, k: (vectors[0][k], vectors[1][k], vectors[2][k], vectors[3][k])
    return None


@overload(store_states_vector)
def _store_states_vector(states, base, s0, s1, s2, s3):
    n = len(states)
    if n == 0:
        def impl0(states, base, s0, s1, s2, s3):
            pass

        return impl0
    if n == 1:
        def impl1(states, base, s0, s1, s2, s3):
            store_vector(states[0], base, (s0[0], s1[0], s2[0], s3[0]))

        return impl1
    if n == 2:
        def impl2(states, base, s0, s1, s2, s3):
            store_vector(states[0], base, (s0[0], s1[0], s2[0], s3[0]))
            store_vector(states[1], base, (s0[1], s1[1], s2[1], s3[1]))

        return impl2
    if n == 3:
        def impl3(states, base, s0, s1, s2, s3):
            store_vector(states[0], base, (s0[0], s1[0], s2[0], s3[0]))
            store_vector(states[1], base, (s0[1], s1[1], s2[1], s3[1]))
            store_vector(states[2], base, (s0[2], s1[2], s2[2], s3[2]))

        return impl3
    if n == 4:
        def impl4(states, base, s0, s1, s2, s3):
            store_vector(states[0], base, (s0[0], s1[0], s2[0], s3[0]))
            store_vector(states[1], base, (s0[1], s1[1], s2[1], s3[1]))
            store_vector(states[2], base, (s0[2], s1[2], s2[2], s3[2]))
            store_vector(states[3], base, (s0[3], s1[3], s2[3], s3[3]))

        return impl4
    return None
