"""The numba backend's ``forward`` and ``backward``: same contract and tape as :mod:`kinn_ref.reference`.

The NumPy side validates, builds the circuit (reusing :func:`~kinn_ref.parameterization.make_circuit`),
prepares the per-pass constants and turns the kernels' sums into gradients (reusing
:func:`~kinn_ref.parameterization.circuit_vjp` and :func:`~kinn_ref.reference.input_currents_vjp`); the
step loops run in the compiled kernels of :mod:`.loops`.
"""
import sys
import threading
from dataclasses import dataclass

import numpy as np

from ...contract import Tape, check_backward, check_forward
from ...coupling import make_coupling
from ...errors import NonFiniteStateError
from ...parameterization import circuit_vjp, make_circuit
from ...reference import input_currents_vjp
from ...tape_checks import copy_params
from ..launch_warnings import quiet_launches
from . import config
from .codes import N_MATRIX_SUMS, N_NODE_SUMS
from .compile_notice import first_call
from .constants import CONSTANTS_CLASS, prepare_constants
from .dispatch import run_shares, share_count, sum_groups
from .gradients import circuit_gradients
from .loops import pass_kernels
from .threads import single_threaded_blas

NAME = "numba"


@dataclass
class PassContext:
    """What the numba kernels keep of a forward pass (``tape.ctx``).

    Attributes
    ----------
    constants : KernelConstants
    integrator_ctx : SimpleNamespace or None
        Reference integrator context used to chain per-pass gradient terms.
    currents : ndarray, shape (B, T_in, N)
        Input currents as the kernels read them (``T_in = 1`` for static input).
    kept : ndarray, shape (S, B, K, N)
        The kept states (``tape.states`` holds views of it).
    slot_of_step : ndarray of int64, shape (T + 1,)
        Index into ``kept`` per step, -1 where the state was not kept.
    rows : int
        Batch rows per chunk.
    every : int
        Steps between kept states (the backward recomputes the others); 0 when every state is kept.
    """

    constants: object
    integrator_ctx: object
    currents: np.ndarray
    kept: np.ndarray
    slot_of_step: np.ndarray
    rows: int
    every: int


class _StateBuffer:
    """Hands out the array of kept states, reusing the last one once no tape refers to it any more.

    A fresh buffer of hundreds of MiB costs a page fault per page on first touch, which can take as long
    as the pass itself; a training loop asks for the same shape every step. At most one buffer is held.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._buffer = None

    def take(self, shape, dtype):
        with self._lock:
            buf = self._buffer
            # references: self._buffer, buf, getrefcount's argument -> no tape holds it
            if buf is not None and buf.shape == shape and buf.dtype == dtype and sys.getrefcount(buf) == 3:
                return buf
            self._buffer = np.empty(shape, dtype)
            return self._buffer

    def release(self):
        """Drop the held buffer (its memory returns once no tape refers to it)."""
        with self._lock:
            self._buffer = None


_STATES = _StateBuffer()


def release_state_buffer():
    """Let go of the kept-state buffer the backend holds for reuse (see :class:`_StateBuffer`)."""
    _STATES.release()


def chunk_rows(spec, batch, dtype):
    """Batch rows per chunk (see :mod:`.config`); independent of the thread count."""
    row_bytes = spec.order * spec.total_nodes * np.dtype(dtype).itemsize
    rows = max(1, config.CHUNK_BYTES // row_bytes)
    if spec.coupling in ("dense", "kirchhoff"):
        rows = max(rows, config.MIN_MATRIX_ROWS)
    return max(1, min(rows, -(-batch // config.MIN_CHUNKS), batch))


def default_interval(spec):
    """Steps between kept states when ``checkpoint_every`` is None: every state, except for uncoupled
    exponential Euler, whose recomputation is cheaper than writing and reading every state (measured in
    docs/benchmarks.md: 1.6x on the float32 ``cell`` benchmark); same results either way."""
    if spec.coupling == "none" and spec.integrator == "expeuler":
        return config.CELL_RECOMPUTE_INTERVAL
    return None


def kernels_for(spec):
    """The pass kernels of ``spec``. A single cell's ``last`` and ``cells`` readouts are the same output
    (eqs. 18-19 with K = 1), so both run the ``cells`` kernels: one compilation serves both."""
    readout = "cells" if spec.readout == "last" and spec.order == 1 else spec.readout
    return pass_kernels(spec.integrator, readout)


def _first_call(kernels, direction, spec, dtype):
    """The compile notice of a pass kernel's first call for this direction and dtype in the process."""
    dispatcher = kernels.forward_chunks if direction == "forward" else kernels.backward_chunks
    what = (f"the {direction} pass of {spec.integrator} layers with readout {kernels.readout!r} and {spec.coupling} "
            f"coupling in {np.dtype(dtype)}")
    family = CONSTANTS_CLASS[spec.coupling].coupling_kind
    return first_call((kernels.integrator, kernels.readout, family, direction, np.dtype(dtype).str), what,
                      dispatcher)


def _kept_steps(T, checkpoint_every):
    keep = checkpoint_every or 1
    return [0] + [n + 1 for n in range(T) if (n + 1) % keep == 0 or n + 1 == T]


@quiet_launches
def forward(spec, params, x, V0=None, *, checkpoint_every=None, on_nonfinite="raise"):
    """Integrate one KINN layer with the compiled kernels (eqs. 1-20).

    Same arguments, results and tape semantics as :func:`kinn_ref.reference.forward`; the tape's
    ``backend`` is ``"numba"``.
    """
    call = check_forward(spec, params, x, V0, checkpoint_every, on_nonfinite,
                         default_interval=default_interval(spec))
    dtype, sequence, B, T, checkpoint_every = call.dtype, call.sequence, call.B, call.T, call.checkpoint_every
    unstable = call.unstable
    K, N = spec.order, spec.total_nodes
    Y0 = np.zeros((B, K, N), dtype) if V0 is None else np.ascontiguousarray(call.V0)
    circuit = make_circuit(spec, params)
    coupling = make_coupling(spec, circuit)
    constants, integrator_ctx = prepare_constants(spec, circuit, coupling, dtype)
    I = x @ params["W"].T + params["b"]                      # eq. 3
    cur = np.ascontiguousarray(I.reshape(B, T if sequence else 1, N))
    currents = cur if sequence else np.broadcast_to(cur, (B, T, N))
    every = checkpoint_every or default_interval(spec)
    kept_steps = _kept_steps(T, every)
    slot_of_step = np.full(T + 1, -1, np.int64)
    slot_of_step[kept_steps] = np.arange(len(kept_steps))
    kept = _STATES.take((len(kept_steps), B, K, N), dtype)
    y = np.empty((B, T if spec.return_sequences else 1, spec.readout_width), dtype)
    rows = chunk_rows(spec, B, dtype)
    nonfinite = np.empty((-(-B // rows), 2), np.int64)
    kernels = kernels_for(spec)
    with single_threaded_blas(), _first_call(kernels, "forward", spec, dtype):
        n = share_count(spec, B, T, len(nonfinite))
        run_shares(n, lambda share: kernels.forward_chunks(constants, share, n, rows, Y0, cur, kept, slot_of_step,
                                                           y, spec.return_sequences, on_nonfinite == "raise",
                                                           nonfinite))
    bad = None
    if np.any(nonfinite[:, 0] >= 0):
        step = int(nonfinite[nonfinite[:, 0] >= 0, 0].min())
        bad = (step, int(nonfinite[nonfinite[:, 0] == step, 1].min()))
        if on_nonfinite == "raise":
            raise NonFiniteStateError(bad[0], bad[1], spec.dt)
    y = y if spec.return_sequences else y[:, 0]
    ctx = PassContext(constants=constants, integrator_ctx=integrator_ctx, currents=cur, kept=kept,
                      slot_of_step=slot_of_step, rows=rows, every=every or 0)
    # the kernels copied V0 into kept[0]; x is read again by the backward pass, so the tape keeps a copy
    tape = Tape(spec=spec, backend=NAME, x=x.copy(), currents=currents,
                states={n: kept[s] for s, n in enumerate(kept_steps)}, n_steps=T, sequence=sequence,
                has_V0=V0 is not None, checkpoint_every=checkpoint_every, nonfinite=bad, circuit=circuit,
                coupling=coupling, ctx=ctx, output_shape=y.shape, dtype=dtype, params_copy=copy_params(params),
                unstable=unstable)
    return y, tape


@quiet_launches
def backward(spec, params, tape, dy):
    """Gradients of ``sum(dy * y)`` for the pass in ``tape`` (discrete adjoint of eqs. 1-20).

    Same arguments, results and refusals (:class:`~kinn_ref.errors.TapeMismatchError`) as
    :func:`kinn_ref.reference.backward`.
    """
    if not isinstance(tape, Tape) or tape.backend != NAME:
        raise ValueError(f"tape must come from the numba backend's forward, got "
                         f"{getattr(tape, 'backend', type(tape).__name__)!r}")
    dtype = check_backward(tape, spec, params, dy)
    ctx = tape.ctx
    B, K, N = tape.x.shape[0], spec.order, spec.total_nodes
    dy3 = np.ascontiguousarray(dy if spec.return_sequences else dy[:, None, :])
    dI = np.zeros(ctx.currents.shape, dtype)
    dV0 = np.empty((B, K, N), dtype)
    n_chunks = -(-B // ctx.rows)
    nn = N if spec.coupling in ("dense", "kirchhoff") else 0
    n_groups = sum_groups(spec, B, tape.n_steps, n_chunks, 8 * (N_NODE_SUMS * K * N + N_MATRIX_SUMS * K * nn * nn))
    node_sums = np.zeros((n_groups, N_NODE_SUMS, K, N))
    mat_sums = np.zeros((n_groups, N_MATRIX_SUMS, K, nn, nn))
    n_threads = min(share_count(spec, B, tape.n_steps, n_chunks), n_groups)
    kernels = kernels_for(spec)

    def share(thread):
        for g in range(thread, n_groups, n_threads):     # which thread runs a group changes no sum
            kernels.backward_chunks(ctx.constants, g, n_groups, n_chunks, ctx.rows, ctx.currents, ctx.kept,
                                    ctx.slot_of_step, ctx.every, dy3, spec.return_sequences, dV0, dI,
                                    node_sums[g], mat_sums[g])

    with single_threaded_blas(), _first_call(kernels, "backward", spec, dtype):
        run_shares(n_threads, share)
    acc = circuit_gradients(spec, ctx, tape.coupling, node_sums, mat_sums, dtype)
    grads = input_currents_vjp(spec, params, tape.x, tape.sequence, dI)
    grads.update(circuit_vjp(spec, params, acc))
    if tape.has_V0:
        grads["V0"] = dV0
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in grads.items()}
