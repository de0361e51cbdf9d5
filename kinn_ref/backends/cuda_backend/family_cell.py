"""The ``none`` coupling on the fused per-node kernels (:mod:`.cell_kernels`): forward and backward passes."""
from types import SimpleNamespace

from . import gemm as mm
from .cell_kernels import cell_kernels, fused_projection, n_stores, span_capacity
from .device import empty, new_flag, node_grid, scalar, zeros
from .projection import project
from .slots import N_SLOTS

KINDS = {"euler": "linear", "expeuler": "linear", "implicit": "implicit", "rk4": "rk4"}
READOUTS = {"last": 0, "cells": 1, "derivatives": 2}


def _inputs(spec, tape_x, sequence, T):
    """``(x3, fused, Ibuf)``: ``x`` as (B, Tin, D), whether the kernels project it, and the current buffer."""
    B = tape_x.shape[0]
    Tin = T if sequence else 1
    D = spec.in_features
    x3 = tape_x.reshape(B, Tin, D)
    return x3, fused_projection(D), Tin


def _dummy(ndim, dtype):
    return empty((1,) * ndim, dtype)


def default_interval(T):
    """States the fused kernels keep by default: one per backward span."""
    return span_capacity()


def forward(spec, dp, circuit, consts, coupling, x, V0, T, sequence, every, flag):
    """Run the fused forward kernel over all ``T`` steps.

    Returns
    -------
    y : device array (B, T or 1, W)
    states : dict
    aux : SimpleNamespace
        ``currents``: the projected input (B, Tin, N), or None when the kernels project it themselves.
    """
    dtype = dp["W"].dtype
    B, K, N = x.shape[0], spec.order, spec.total_nodes
    x3, fused, Tin = _inputs(spec, x, sequence, T)
    Ibuf = _dummy(3, dtype) if fused else project(x3.reshape(B * Tin, spec.in_features), dp["W"],
                                                  dp["b"]).reshape(B, Tin, N)
    fwd, _ = cell_kernels(dtype.str, K, KINDS[spec.integrator])
    y = empty((B, T if spec.return_sequences else 1, spec.readout_width), dtype)
    store = empty((n_stores(T, every), B, K, N), dtype)
    grid, block = node_grid(N, B)
    fwd[grid, block](x3, dp["W"], dp["b"], Ibuf, fused, sequence, 0, T, T, scalar(dtype, spec.dt),
                     V0 if V0 is not None else _dummy(3, dtype), V0 is not None, consts.c1, consts.c2, circuit.C,
                     circuit.g, circuit.leak, circuit.beta, store, every, y, READOUTS[spec.readout],
                     spec.return_sequences, flag)
    states = {0: V0}
    for j in range(store.shape[0]):
        states[min((j + 1) * every, T)] = store[j]
    return y, states, SimpleNamespace(currents=None if fused else Ibuf)


def backward(spec, tape, dy3):
    """Adjoint of :func:`forward`.

    Returns
    -------
    sums : device array (K, N_SLOTS, N)
        Gradient sums of :mod:`.slots`, reduced over the batch in a fixed order.
    dI : device array (B, Tin, N)
    dV0 : device array (B, K, N) or None
    """
    dp, circuit, consts = tape.params, tape.circuit, tape.consts
    dtype = dp["W"].dtype
    x = tape.x
    B, K, N, T = x.shape[0], spec.order, spec.total_nodes, tape.n_steps
    x3, fused, Tin = _inputs(spec, x, tape.sequence, T)
    Ibuf = _dummy(3, dtype) if fused else tape.aux.currents
    fwd, bwd = cell_kernels(dtype.str, K, KINDS[spec.integrator])
    grid, block = node_grid(N, B)
    partial = zeros((grid[1], K, N_SLOTS, N), dtype)
    dI = empty((B, Tin, N), dtype)
    dY = empty((B, K, N), dtype)
    dt = scalar(dtype, spec.dt)
    cap = span_capacity()
    common = (x3, dp["W"], dp["b"], Ibuf, fused, tape.sequence)
    consts_args = (consts.c1, consts.c2, circuit.C, circuit.g, circuit.leak, circuit.beta)
    dummy3 = _dummy(3, dtype)
    marks = sorted(tape.states)
    first = True

    def span(n0, n1, Ystart):
        nonlocal first
        last = n0 == 0
        bwd[grid, block](*common, n0, n1, T, dt, Ystart if Ystart is not None else dummy3, Ystart is not None,
                         dY, not first, *consts_args, dy3, READOUTS[spec.readout], spec.return_sequences,
                         dY, (not last) or tape.has_V0, dI, not first, partial)
        first = False

    for i in reversed(range(len(marks) - 1)):
        n0, n1 = marks[i], marks[i + 1]
        Ystart = tape.states[n0]
        if n1 - n0 <= cap:
            span(n0, n1, Ystart)
            continue
        sub = empty((n_stores(n1 - n0, cap), B, K, N), dtype)  # states every `cap` steps inside the span
        fwd[grid, block](*common, n0, n1, -1, dt, Ystart if Ystart is not None else dummy3, Ystart is not None,
                         *consts_args, sub, cap, dummy3, 0, False, new_flag())  # T=-1: no readout
        starts = list(range(n0, n1, cap))
        for j in reversed(range(len(starts))):
            s0 = starts[j]
            span(s0, min(s0 + cap, n1), Ystart if j == 0 else sub[j - 1])
    sums = empty((K, N_SLOTS, N), dtype)
    mm.sum_splits(partial, sums)
    return sums, dI, (dY if tape.has_V0 else None)
