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

from numba.extending import overload


def inner(func):
    """``func`` compiled for compiled callers only, without Python or C wrappers, and once per argument
    types: a constant argument (``True``, ``0``) is typed as a plain ``bool`` or ``int``, not as a literal
    of its own (a plain numba function compiles a separate variant per literal value)."""
    @functools.wraps(func)
    def compiled_only(*args, **kwargs):
        raise TypeError(f"{func.__name__} runs inside the numba backend's compiled kernels only")

    @functools.wraps(func)   # numba checks the implementation against this signature (func's)
    def implementation(*args):
        return func
    overload(compiled_only, prefer_literal=False, jit_options={"no_cfunc_wrapper": True})(implementation)
    return compiled_only


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
        overload(stub, prefer_literal=False, jit_options={"no_cfunc_wrapper": True})(choose)   # no Python wrapper
        return stub
    return register
