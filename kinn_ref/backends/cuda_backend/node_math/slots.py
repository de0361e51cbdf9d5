"""Layout of the per-node gradient sums every backward kernel accumulates (summed over batch and steps).

The sums are linear in the cotangents, so they can be reduced in any grouping and turned into circuit
gradients once per pass (docs/math.md section 9, eqs. 38-41; :func:`..integrators.finalize`). Slots 0-4 belong
to the integrator (eqs. 39-40), 5-9 to the right-hand-side adjoint (eq. 41: rk4 stages, the derivative
readout and the trapezoidal start-of-step current). ``dV1`` is the cotangent of a state after a step, ``u``
the drive (``I`` for cell 0, ``V_{k-1}`` for later cells), *without* ``beta``, ``lap(V)`` the grid stencil
without the edge conductance.

======  =======================  ==========================  ============================  ==========================
slot    euler/expeuler (eq. 39)  implicit (eq. 40)           trapezoidal (eq. 40)          rhs adjoint, dF (eq. 41)
======  =======================  ==========================  ============================  ==========================
0 / 5   sum dV1                  sum lam                     sum lam                       sum dF * (rest of F*C)
1 / 6   sum dV1 * V              sum lam * V                 sum lam * V                   sum dF * V
2 / 7   sum dV1 * u              sum lam * V'                sum lam * V'                  sum dF  (affine only)
3 / 8   sum dV1 * lap(V) (grid)  sum lam * V'_{k-1}          sum lam * (V + V')_{k-1}      sum dF * V_{k-1}
4 / 9   (unused)                 sum lam * lap(V') (grid)    sum lam * lap(V + V') (grid)  sum dF * lap(V)  (grid)
======  =======================  ==========================  ============================  ==========================

``lam`` is the solved cotangent ``lambda = M^{-T} dV1`` of eqs. 30 and 37.
"""
import numpy as np

from ..runtime import config
from ..runtime.compat import cuda_module, simulator_active, nvvm_inlined
from ..runtime.device import kernel_cache

cuda = cuda_module()

N_SLOTS = 10
RHS = 5


@kernel_cache
def block_reducer(dtype, K, cols=N_SLOTS):
    """Device function ``block_reduce(acc, partial, n, active)``: sum each thread's ``acc`` (K x cols) over
    the block's rows (``threadIdx.y``) in order and add it to ``partial[blockIdx.y, k, col, n]``.

    Every thread of the block must call it. Values go through shared memory in chunks of at most 16 KiB.
    """
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    zero = np.dtype(dtype).type(0.0)
    TX, TY = config.NODE_BLOCK
    total = K * cols
    most = max(1, 16384 // (TX * TY * np.dtype(dtype).itemsize))
    # The simulator gives every cuda.shared.array call on one source line the same array, so two reducers in
    # one kernel share it there: give them one shape (the loops below stop at ``total``)
    chunk = min(64, most) if simulator_active() else min(total, most)

    @nvvm_inlined()
    def block_reduce(acc, partial, n, active):
        red = cuda.shared.array((chunk, TY, TX), nb)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for c0 in range(0, total, chunk):
            for c in range(chunk):
                if c0 + c < total:
                    red[c, ty, tx] = acc[(c0 + c) // cols, (c0 + c) % cols]
            cuda.syncthreads()
            if ty == 0 and active:
                for c in range(chunk):
                    if c0 + c < total:
                        tot = zero
                        for r in range(TY):
                            tot += red[c, r, tx]
                        partial[cuda.blockIdx.y, (c0 + c) // cols, (c0 + c) % cols, n] += tot
            cuda.syncthreads()

    return block_reduce
