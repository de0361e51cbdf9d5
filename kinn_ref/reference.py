"""The NumPy reference backend: the specification in code (docs/math.md).

``forward`` integrates the layer and records a :class:`Tape`; ``backward`` runs the discrete adjoint
(BPTT) of exactly the steps that were run. With ``checkpoint_every=m`` the tape keeps every m-th state
and the backward recomputes each segment from its checkpoint; the results are identical.
"""
import numpy as np

from .contract import Tape, check_backward, check_forward, input_layout, tape_repr
from .coupling import make_coupling
from .dynamics import zero_grads
from .errors import NonFiniteStateError
from .integrators import INTEGRATORS
from .parameterization import circuit_vjp, make_circuit
from .readout import readout, readout_vjp
from .tape_checks import copy_params

#: ``Tape``, ``input_layout`` and ``tape_repr`` live in :mod:`kinn_ref.contract`, shared by every backend
__all__ = ["Tape", "backward", "forward", "input_currents", "input_currents_vjp", "input_layout", "tape_repr"]


def input_currents(spec, params, x, sequence):
    """``I = x W^T + b`` per node, shape ``(B, T, N)`` (eq. 3); static input is held over all steps."""
    I = x @ params["W"].T + params["b"]
    B = x.shape[0]
    if sequence:
        return I.reshape(B, x.shape[1], spec.total_nodes)
    return np.broadcast_to(I.reshape(B, 1, spec.total_nodes), (B, spec.n_steps, spec.total_nodes))


def input_currents_vjp(spec, params, x, sequence, dI):
    """Adjoint of :func:`input_currents` (eq. 33): gradients of ``W``, ``b`` and ``x``.

    ``dI`` is the cotangent of the currents, ``(B, T, N)``; for a static input it may be ``(B, 1, N)``, already
    summed over the steps.
    """
    B, T, N = dI.shape
    H, D = params["W"].shape
    if not sequence:
        dI = dI.sum(axis=1)
    dI = dI.reshape(x.shape[:-1] + (H,))
    x2, dI2 = x.reshape(-1, D), dI.reshape(-1, H)
    return {"W": dI2.T @ x2, "b": dI2.sum(axis=0), "x": dI @ params["W"]}


def _first_nonfinite_cell(Y):
    return int(np.argmin(np.isfinite(Y).all(axis=(0, 2))))


def forward(spec, params, x, V0=None, *, checkpoint_every=None, on_nonfinite="raise"):
    """Integrate one KINN layer (eqs. 1-20).

    Parameters
    ----------
    spec : LayerSpec
    params : dict of ndarray
        Raw parameters, keys and shapes of ``spec.param_shapes()``; their dtype is the computation's.
    x : ndarray
        ``(B, D)`` static or ``(B, T, D)`` sequence input; grid: ``(B, P, D)`` or ``(B, T, P, D)``.
    V0 : ndarray, shape (B, K, N), optional
        Initial stacked state; zeros when omitted.
    checkpoint_every : int, optional
        Keep every m-th state only; the backward pass recomputes the others.
    on_nonfinite : {"raise", "flag"}
        On a non-finite state, raise :class:`NonFiniteStateError` naming the step and cell, or finish the
        pass and record ``(step, cell)`` in ``tape.nonfinite``. Before the pass, a ``dt`` outside the
        integrator's stable region of a circuit that decays in continuous time raises
        :class:`~kinn_ref.errors.DivergentStepError` (a ``NonFiniteStateError`` naming ``dt``, the largest
        stable ``dt``, the cell and step), or with ``"flag"`` is recorded in ``tape.unstable``
        (:mod:`kinn_ref.divergence`).

    Returns
    -------
    y : ndarray
        ``(B, W)`` with ``W = spec.readout_width``, or ``(B, T, W)`` when ``spec.return_sequences``.
    tape : Tape

    Raises
    ------
    TapeMemoryError
        Before the pass, when its tape would not fit in the memory available (the message names the
        ``checkpoint_every`` that fits; :mod:`kinn_ref.tape_memory`).
    """
    call = check_forward(spec, params, x, V0, checkpoint_every, on_nonfinite)
    dtype, sequence, B, T, checkpoint_every = call.dtype, call.sequence, call.B, call.T, call.checkpoint_every
    unstable = call.unstable
    Y = np.zeros((B, spec.order, spec.total_nodes), dtype) if V0 is None else call.V0.copy()
    circuit = make_circuit(spec, params)
    coupling = make_coupling(spec, circuit)
    integrator = INTEGRATORS[spec.integrator]
    ctx = integrator.prepare(circuit, coupling, spec.dt)
    currents = input_currents(spec, params, x, sequence)
    keep = 1 if checkpoint_every is None else checkpoint_every
    states, outputs, nonfinite = {0: Y}, [], None
    with np.errstate(all="ignore"):  # non-finite states are detected explicitly below
        for n in range(T):
            Y = integrator.step(ctx, Y, currents[:, n])
            if nonfinite is None and not np.isfinite(Y).all():
                nonfinite = (n, _first_nonfinite_cell(Y))
                if on_nonfinite == "raise":
                    raise NonFiniteStateError(n, nonfinite[1], spec.dt)
            if (n + 1) % keep == 0 or n + 1 == T:
                states[n + 1] = Y
            if spec.return_sequences:
                outputs.append(readout(spec, circuit, coupling, Y, currents[:, n]))
    y = np.stack(outputs, axis=1) if spec.return_sequences else readout(spec, circuit, coupling, Y,
                                                                         currents[:, T - 1])
    tape = Tape(spec=spec, backend="numpy", x=x.copy(), currents=currents, states=states, n_steps=T,
                sequence=sequence, has_V0=V0 is not None, checkpoint_every=checkpoint_every,
                nonfinite=nonfinite, circuit=circuit, coupling=coupling, ctx=ctx, output_shape=y.shape,
                dtype=dtype, params_copy=copy_params(params), unstable=unstable)
    return y, tape


def _segment(integrator, ctx, tape, start, stop):
    """States ``start..stop`` recomputed from the checkpoint at ``start``."""
    Ys = [tape.states[start]]
    for n in range(start, stop):
        Ys.append(tape.states[n + 1] if tape.checkpoint_every is None
                  else integrator.step(ctx, Ys[-1], tape.currents[:, n]))
    return Ys


def backward(spec, params, tape, dy):
    """Gradients of ``sum(dy * y)`` for the pass recorded in ``tape`` (discrete adjoint of eqs. 1-20: eqs. 25-35).

    Parameters
    ----------
    spec : LayerSpec
        The spec of the forward pass.
    params : dict of ndarray
        The parameters the forward pass used, unchanged (update them after ``backward``).
    tape : Tape
    dy : ndarray
        Cotangent of the output, same shape and dtype as ``y``.

    Returns
    -------
    dict of ndarray
        Same keys and shapes as ``params``, plus ``"x"`` and, when ``V0`` was given, ``"V0"``.

    Raises
    ------
    TapeMismatchError
        When ``spec`` differs from the forward pass's, or ``params`` have another dtype or values changed since
        the forward pass (the message names the field or array).
    """
    dtype = check_backward(tape, spec, params, dy)
    integrator = INTEGRATORS[spec.integrator]
    circuit, coupling, ctx, I = tape.circuit, tape.coupling, tape.ctx, tape.currents
    integrator.start_vjp(ctx)
    acc = zero_grads(circuit)
    T = tape.n_steps
    B, N = I.shape[0], I.shape[2]
    # a static input's current is the same at every step: its cotangent is summed over the steps as they go
    dI = np.zeros((B, T, N) if tape.sequence else (B, N), dtype)
    starts = sorted(s for s in tape.states if s < T)
    dY = None
    for start in reversed(starts):
        stop = min(T, start + (tape.checkpoint_every or 1))
        Ys = _segment(integrator, ctx, tape, start, stop)
        for n in reversed(range(start, stop)):
            Y_next = Ys[n + 1 - start]
            dI_n = dI[:, n] if tape.sequence else dI      # a view: the sums below go into dI
            dy_n = dy[:, n] if spec.return_sequences else (dy if n == T - 1 else None)
            if dy_n is not None:
                dY_r, dI_r = readout_vjp(spec, circuit, coupling, Y_next, I[:, n], dy_n, acc)
                dY = dY_r if dY is None else dY + dY_r
                if dI_r is not None:
                    dI_n += dI_r
            dY, dI_step = integrator.step_vjp(ctx, Ys[n - start], I[:, n], Y_next, dY, acc)
            dI_n += dI_step
    integrator.finalize_vjp(ctx, acc)
    grads = input_currents_vjp(spec, params, tape.x, tape.sequence, dI if tape.sequence else dI[:, None])
    grads.update(circuit_vjp(spec, params, acc))
    if tape.has_V0:
        grads["V0"] = dY
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in grads.items()}
