"""Tunables of the ``cuda`` backend (threads per block, tile sizes, segment lengths).

Kernels are built from these values when first used and cached under a key that includes them
(:func:`key`), so changing a value (tests patch them small so that multi-block paths run on tiny inputs)
builds new kernels. Under the CUDA simulator, which runs every thread as a Python thread, the defaults are
small.
"""
import os

from .compat import simulator_requested

_SIM = simulator_requested()

#: Threads per block of the node-parallel kernels: (nodes, batch rows).
NODE_BLOCK = (2, 2) if _SIM else (32, 8)
#: Threads resident on the whole device the node-parallel kernels aim for (batch blocks are sized from it);
#: multiplied by the multiprocessor count.
THREADS_PER_SM = 32 if _SIM else 2048
#: The fused ``none`` kernels keep the states of CELL_SEGMENT steps, and CELL_CHECKPOINTS checkpoints, per
#: thread: one backward launch covers up to CELL_SEGMENT * CELL_CHECKPOINTS steps.
CELL_SEGMENT = 2 if _SIM else 8
CELL_CHECKPOINTS = 2 if _SIM else 8
#: Launch bound of the fused ``none`` kernels: at least this many blocks per multiprocessor (limits their
#: registers; None leaves the choice to the compiler). Two blocks of 256 threads cap them at 128: measured on an
#: H200 (docs/benchmarks.md), the backward kernel then runs faster than with 157 registers and one block.
CELL_MIN_BLOCKS = None if _SIM else 2
#: Static inputs of at most CELL_STATIC_MAX_T steps run on kernels built for their T
#: (:mod:`..families.cell_static`), whose backward keeps a checkpoint every CELL_STATIC_SEGMENT steps and the
#: states of one segment in registers.
CELL_STATIC_MAX_T = 64
#: ... and only for these update kinds (:func:`..integrators.update_kind`) and readouts. Measured on an H200
#: (docs/benchmarks.md, 2026-12-04), the written-out backward pays for one-stage steps read out at the last cell
#: (2.5x faster than the span kernels) but is slower to run and to build for RK4 (21.1 against 19.8 ms, first
#: call 41 against 15 s) and for the ``derivatives`` readout (8.4 against 5.8 ms, 19 against 13 s). The
#: trapezoidal step is one stage, like the implicit one.
CELL_STATIC_INTEGRATORS = ("linear", "implicit", "trapezoidal")
CELL_STATIC_READOUTS = ("last", "cells")
CELL_STATIC_SEGMENT = 2 if _SIM else 8
#: The fused ``none`` kernels compute the input projection themselves up to this many input features (above,
#: it is one matrix product before the kernels).
FUSED_PROJECTION_MAX_D = 32
#: Tiled matrix product: block tile (BM, BN), depth BK and per-thread tile (TM, TN), per dtype itemsize.
GEMM_TILE = {4: (4, 4, 2, 2, 2), 8: (4, 4, 2, 2, 2)} if _SIM else {4: (128, 128, 8, 8, 8), 8: (64, 64, 8, 4, 4)}
#: Which library computes the matrix products (:mod:`..linalg.cublas`): "auto" (cuBLAS through CuPy where it
#: works, else the tiled kernel of :mod:`..linalg.gemm`), "cublas" or "own"; ``KINN_REF_CUDA_GEMM`` sets it.
GEMM_LIBRARY = os.environ.get("KINN_REF_CUDA_GEMM", "auto")
#: Tiles of products with at most BN output columns (the input projection's adjoint, its weight gradient).
GEMM_NARROW_TILE = {4: (4, 2, 2, 2, 1), 8: (4, 2, 2, 2, 1)} if _SIM else {4: (256, 32, 8, 8, 4),
                                                                           8: (128, 32, 8, 4, 4)}
#: Split a product's reduction into chunks of at least this length when its output has few tiles.
GEMM_SPLIT_MIN = 4 if _SIM else 512
#: Input projections with at most PROJECTION_THIN_MAX_D input features run on the thin kernels of
#: :mod:`.linalg.projection`: row tiles of RT rows (RT threads per block), columns in chunks of HC; PROJECTION_TILE is
#: (RT, HC) per dtype itemsize (shared memory: RT * (HC + 1 + D) values).
PROJECTION_THIN_MAX_D = 8
PROJECTION_TILE = {4: (4, 2), 8: (4, 2)} if _SIM else {4: (128, 32), 8: (64, 32)}
#: Threads per block of one-dimensional kernels (fills, reductions, optimizer updates).
FLAT_BLOCK = 4 if _SIM else 256
#: Persistent dense kernel: used for one cell of at most PERSISTENT_MAX_N nodes; threads form
#: PERSISTENT_GROUPS x PERSISTENT_GROUPS groups, each owning PERSISTENT_ROWS rows of a batch tile.
PERSISTENT_MAX_N = 128
PERSISTENT_GROUPS = 2 if _SIM else 16
PERSISTENT_ROWS = 1 if _SIM else 4
#: Steps per backward launch of the persistent kernels.
PERSISTENT_SPAN = 3 if _SIM else 16
#: Largest dynamic shared memory (bytes) the persistent kernel may ask for.
PERSISTENT_MAX_SHARED = 220 * 1024
#: Threads per block of the on-device matrix inversion (implicit steps of dense/kirchhoff couplings).
INVERSE_BLOCK = 4 if _SIM else 256

_NAMES = ("NODE_BLOCK", "THREADS_PER_SM", "CELL_SEGMENT", "CELL_CHECKPOINTS", "CELL_MIN_BLOCKS",
          "CELL_STATIC_MAX_T", "CELL_STATIC_INTEGRATORS", "CELL_STATIC_READOUTS",
          "CELL_STATIC_SEGMENT",
          "FUSED_PROJECTION_MAX_D", "GEMM_TILE", "GEMM_NARROW_TILE", "GEMM_SPLIT_MIN",
          "PROJECTION_THIN_MAX_D", "PROJECTION_TILE", "FLAT_BLOCK", "PERSISTENT_MAX_N",
          "PERSISTENT_GROUPS", "PERSISTENT_ROWS", "PERSISTENT_SPAN", "PERSISTENT_MAX_SHARED",
          "INVERSE_BLOCK")


_KEY = [(), ()]          # the tunables' objects when the key was last made, and that key


def key():
    """The current values of all tunables, for kernel cache keys.

    Every kernel lookup asks for it, so the key is remade only when a tunable has been rebound since the last
    call (as tests do); otherwise this costs one identity check per tunable."""
    g = globals()
    objects = tuple(g[n] for n in _NAMES)
    last, cached = _KEY
    if len(last) != len(objects) or any(a is not b for a, b in zip(last, objects)):
        cached = tuple((n, repr(o)) for n, o in zip(_NAMES, objects))
        _KEY[:] = [objects, cached]
    return cached
