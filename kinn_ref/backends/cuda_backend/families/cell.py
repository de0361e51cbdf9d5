"""The ``none`` coupling on the fused per-node kernels: forward and backward passes.

A static input projected in the kernels, over at most ``config.CELL_STATIC_MAX_T`` steps of an integrator
in ``config.CELL_STATIC_INTEGRATORS``, read out as in ``config.CELL_STATIC_READOUTS``, and with no
``checkpoint_every`` asked for, runs on the kernels built for its ``T`` (:mod:`.families.cell_static`): one launch
each way, no state kept. Otherwise :mod:`.families.cell_kernels` run it: the backward runs one launch per span of
``span_capacity()`` steps (:mod:`.families.spans`), latest first; a span's first state is a kept state or is
recomputed by the forward kernel from the last kept state before it.
"""
from types import SimpleNamespace

from ...codes import READOUT_CODES
from ..linalg import gemm as mm
from ..linalg.projection import project
from ..node_math.slots import N_SLOTS
from ..runtime.device import empty, new_flag, node_grid, scalar, transposed, zeros
from . import cell_static, static_cell_pass
from ..integrators import update_kind
from .cell_kernels import kernels_for, span_capacity
from .spans import groups, n_stores, spans, store_index, stored_states

READOUTS = READOUT_CODES


def _inputs(spec, x, sequence, T):
    """``(x3, Tin)``: ``x`` as (B, Tin, D)."""
    Tin = T if sequence else 1
    return x.reshape(x.shape[0], Tin, spec.in_features), Tin


def _dummy(ndim, dtype):
    return empty((1,) * ndim, dtype)


def default_interval(T):
    """Keep the first state of every backward span (the kernels recompute the others)."""
    return span_capacity()


def _static_kernels(spec, dtype, T):
    return cell_static.static_kernels(dtype.str, spec.order, update_kind(spec.integrator), spec.in_features, T,
                                      READOUTS[spec.readout], spec.return_sequences)


def forward(spec, dp, circuit, consts, coupling, x, V0, T, sequence, every, flag, explicit_interval=False):
    """Run the fused forward kernel over all ``T`` steps (``explicit_interval``: ``every`` was asked for).

    Returns
    -------
    y : device array (B, T or 1, W)
    states : dict
    aux : SimpleNamespace
        ``currents``: the projected input (B, Tin, N), or None when the kernels project it themselves;
        ``weights``: what the kernels read as their weights argument (``W^T`` when they project, else ``W``),
        reused by the backward pass; ``static``: whether :mod:`.families.cell_static` ran it.
    """
    dtype = dp["W"].dtype
    B, K, N = x.shape[0], spec.order, spec.total_nodes
    x3, Tin = _inputs(spec, x, sequence, T)
    grid, block = node_grid(N, B)
    if static_cell_pass(spec, sequence, T, explicit_interval):
        fwd = _static_kernels(spec, dtype, T).forward
        y = empty((B, T if spec.return_sequences else 1, spec.readout_width), dtype)
        weights = transposed(dp["W"])
        fwd[grid, block](x3, weights, dp["b"], scalar(dtype, spec.dt), V0 if V0 is not None else _dummy(3, dtype),
                         V0 is not None, consts.c1, consts.c2, circuit.C, circuit.g, circuit.leak, circuit.beta,
                         y, flag)
        return y, {0: V0}, SimpleNamespace(currents=None, weights=weights, static=True)
    chosen = kernels_for(dtype.str, K, update_kind(spec.integrator), spec.in_features)
    fwd, fused = chosen.forward, chosen.fused
    Ibuf = _dummy(3, dtype) if fused else project(x3.reshape(B * Tin, spec.in_features), dp["W"],
                                                  dp["b"]).reshape(B, Tin, N)
    y = empty((B, T if spec.return_sequences else 1, spec.readout_width), dtype)
    store = empty((n_stores(0, T, every), B, K, N), dtype)
    weights = transposed(dp["W"]) if fused else dp["W"]
    fwd[grid, block](x3, weights, dp["b"], Ibuf, sequence, 0, T, T, scalar(dtype, spec.dt),
                     V0 if V0 is not None else _dummy(3, dtype), V0 is not None, consts.c1, consts.c2, circuit.C,
                     circuit.g, circuit.leak, circuit.beta, store, every, y, READOUTS[spec.readout],
                     spec.return_sequences, flag)
    states = {0: V0}
    states.update(stored_states(store, 0, T, every))
    return y, states, SimpleNamespace(currents=None if fused else Ibuf, weights=weights, static=False)


def backward(spec, tape, dy3):
    """Adjoint of :func:`forward`.

    Returns
    -------
    sums : device array (K, N_SLOTS, N)
        Gradient sums of :mod:`.node_math.slots`, reduced over the batch in a fixed order.
    dI : device array (B, Tin, N)
    dV0 : device array (B, K, N) or None
    dW_db : (device array (N, D), device array (N,)), only after :mod:`.families.cell_static` ran the pass
        The projection's weight and bias gradients, summed by the backward kernel.
    """
    dp, circuit, consts = tape.params, tape.circuit, tape.consts
    dtype = dp["W"].dtype
    B, K, N, T = tape.x.shape[0], spec.order, spec.total_nodes, tape.n_steps
    x3, Tin = _inputs(spec, tape.x, tape.sequence, T)
    grid, block = node_grid(N, B)
    partial = zeros((grid[1], K, N_SLOTS, N), dtype)
    dI = empty((B, Tin, N), dtype)
    dt = scalar(dtype, spec.dt)
    dummy3 = _dummy(3, dtype)
    consts_args = (consts.c1, consts.c2, circuit.C, circuit.g, circuit.leak, circuit.beta)
    if tape.aux.static:
        bwd = _static_kernels(spec, dtype, T).backward
        dY = empty((B, K, N), dtype) if tape.has_V0 else dummy3
        V0 = tape.states[0]
        D = spec.in_features
        pproj = zeros((grid[1], 1, D + 1, N), dtype)
        bwd[grid, block](x3, tape.aux.weights, dp["b"], dt, V0 if V0 is not None else dummy3, V0 is not None,
                         *consts_args, dy3, dY, tape.has_V0, dI, partial, pproj)
        proj = mm.sum_splits(pproj, empty((D + 1, N), dtype))
        dW_db = (transposed(proj[:D]), proj[D])
        return _sums(partial, K, N, dtype), dI, (dY if tape.has_V0 else None), dW_db
    chosen = kernels_for(dtype.str, K, update_kind(spec.integrator), spec.in_features)
    fwd, bwd, fused = chosen.forward, chosen.backward, chosen.fused
    Ibuf = _dummy(3, dtype) if fused else tape.aux.currents
    cap = span_capacity()
    stops = dict(spans(T, cap))
    # dY carries the cotangent of a span's first state to the span before it, and out as dV0
    dY = empty((B, K, N), dtype) if len(stops) > 1 or tape.has_V0 else dummy3
    common = (x3, tape.aux.weights, dp["b"], Ibuf, tape.sequence)
    first = True
    for source, starts in reversed(groups(tape.states, list(stops))):
        start_states = {source: tape.states[source]}
        later = [s for s in starts if s != source]
        if later:  # recompute the spans' first states from the kept state `source`
            Ys = tape.states[source]
            sub = empty((n_stores(source, later[-1], cap), B, K, N), dtype)
            fwd[grid, block](*common, source, later[-1], -1, dt, Ys if Ys is not None else dummy3, Ys is not None,
                             *consts_args, sub, cap, dummy3, 0, False, new_flag())  # T = -1: no readout
            start_states.update({s: sub[store_index(s, source, cap)] for s in later})
        for n0 in reversed(starts):
            Ystart = start_states[n0]
            bwd[grid, block](*common, n0, stops[n0], T, dt, Ystart if Ystart is not None else dummy3,
                             Ystart is not None, dY, not first, *consts_args, dy3, READOUTS[spec.readout],
                             spec.return_sequences, dY, n0 > 0 or tape.has_V0, dI, not first, partial)
            first = False
    return _sums(partial, K, N, dtype), dI, (dY if tape.has_V0 else None)


def _sums(partial, K, N, dtype):
    """The gradient sums (K, N_SLOTS, N): the per-block partial sums added in block order."""
    return mm.sum_splits(partial, empty((K, N_SLOTS, N), dtype))
