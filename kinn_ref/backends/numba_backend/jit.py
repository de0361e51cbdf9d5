"""The two ways this backend compiles a function with numba.

:func:`inner` is for everything a pass kernel calls: compiled only as part of a kernel, so numba builds no
Python or C entry point for it (about 15 % of a first call's compile time went into those wrappers,
measured in docs/benchmarks.md). The pass kernels themselves (:mod:`.loops`) are the only entry points
called from Python, and the only functions cached on disk.

:func:`by_coupling` makes a function whose body is chosen when numba compiles it, by the coupling kind
carried in the type of its first argument (the :class:`~.constants.KernelConstants` subclass of the pass),
so a kernel compiles only the code of its own coupling.
"""
import functools

import numba
from numba.extending import overload


def inner(func):
    """``numba.njit`` without Python or C wrappers: callable from compiled code only."""
    return numba.njit(func, no_cpython_wrapper=True, no_cfunc_wrapper=True)


def by_coupling(*, none, matrix, grid):
    """Decorate a stub so that compiled callers get ``none``, ``matrix`` or ``grid`` (plain Python functions
    with the stub's signature) by the ``coupling_kind`` of the first argument's class.

    The stub's own body never runs in a kernel; called from Python it should raise.
    """
    impls = {"none": none, "matrix": matrix, "grid": grid}

    def register(stub):
        @functools.wraps(stub)   # numba checks the implementation against this signature (the stub's)
        def choose(*args):
            kind = getattr(getattr(args[0], "instance_class", None), "coupling_kind", None)
            return impls.get(kind)
        overload(stub, jit_options={"no_cfunc_wrapper": True})(choose)   # (overloads have no Python wrapper)
        return stub
    return register
