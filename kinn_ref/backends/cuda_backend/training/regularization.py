"""The conductance penalty on the device: twin of :func:`kinn_ref.training.regularization.conductance_penalty`.

``R = strength * sum_layers(mean(g^2) + mean(A^2))`` over the KINN layers' circuits
(:func:`..parameterization.make_circuit`), its gradient taken back to the raw parameters by
:func:`..parameterization.circuit_vjp` and added to the step's gradients.
The sum of the means stays on the device (float64, layers and blocks in order) until the step's report reads it.
"""
from types import SimpleNamespace
import math

import numpy as np

from ...launch_warnings import quiet_launches
from ..parameterization import circuit_vjp, make_circuit
from ..runtime import config
from ..runtime.compat import cuda_module
from ..runtime.device import block_sum, axpby, empty, flat, kernel_cache, multiprocessors, zeros

cuda = cuda_module()


@kernel_cache
def _mean_square_kernels(dtype):
    NT = config.FLAT_BLOCK

    @cuda.jit
    def square_sum(a, partial):
        """Per block: ``partial[block] = sum a^2`` in float64, tree in shared memory."""
        red = cuda.shared.array(NT, np.float64)
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        acc = 0.0
        while i < a.shape[0]:
            v = np.float64(a[i])
            acc += v * v
            i += stride
        tid = cuda.threadIdx.x
        red[tid] = acc
        block_sum(red, tid)
        if tid == 0:
            partial[cuda.blockIdx.x] = red[0]

    @cuda.jit
    def add_mean(partial, size, total):
        """``total[0] += sum(partial) / size`` (one thread, blocks in order)."""
        if cuda.grid(1) == 0:
            acc = 0.0
            for j in range(partial.shape[0]):
                acc += partial[j]
            total[0] += acc / size

    return SimpleNamespace(square_sum=square_sum, add_mean=add_mean)


def _add_mean_square(a, total):
    k_ = _mean_square_kernels(a.dtype.str)
    square_sum, add_mean = k_.square_sum, k_.add_mean
    NT = config.FLAT_BLOCK
    blocks = max(1, min(math.ceil(a.size / NT), 8 * multiprocessors()))
    partial = empty((blocks,), np.float64)
    square_sum[blocks, NT](flat(a), partial)
    add_mean[1, 1](partial, np.float64(a.size), total)


@quiet_launches
def conductance_penalty(network, strength, grads):
    """Add the penalty's gradient to ``grads`` and return its value without ``strength``.

    Parameters
    ----------
    network : DeviceNetwork
    strength : float
        The penalty weight (> 0).
    grads : dict of device arrays
        The step's gradients by the network's names; the KINN layers' ``g_raw`` and ``G_raw`` entries are
        replaced by ``grads + d penalty``.

    Returns
    -------
    device array of float64 (1,)
        ``sum_layers(mean(g^2) + mean(A^2))``; the penalty is ``strength`` times it (the host multiplies, as the
        host twin does).
    """
    total = zeros((1,), np.float64)
    for prefix, spec, dparams in network.kinn_layers():
        circuit = make_circuit(spec, dparams)
        _add_mean_square(circuit.g, total)
        dg = axpby(2.0 * strength / circuit.g.size, circuit.g, 0.0, circuit.g)
        dA = None
        if circuit.A is not None:
            _add_mean_square(circuit.A, total)
            dA = axpby(2.0 * strength / circuit.A.size, circuit.A, 0.0, circuit.A)
        node = zeros(circuit.C.shape, circuit.C.dtype)
        d_raw = circuit_vjp(spec, dparams, node, dg, node, node, dA)
        for k in ("g_raw", "G_raw") if dA is not None else ("g_raw",):
            name = f"{prefix}.{k}"
            grads[name] = axpby(1.0, grads[name], 1.0, d_raw[k])
    return total
