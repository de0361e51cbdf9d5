"""The compiled step loops: forward and backward passes over chunks of batch rows (twins of the loops of
:func:`kinn_ref.reference.forward` and :func:`kinn_ref.reference.backward`).

Each pair of pass kernels is built for one integrator and one readout (:func:`pass_kernels`): their codes
are constants of the kernels' closure, so numba prunes the other methods' branches before typing them and
compiles only what the spec runs (the coupling is still chosen at run time inside the integrators). Only
the pass kernels are cached on disk, each holding the code of everything it calls; the digest of this
package's sources is a constant of their closure too, so numba's cache (which checks the source file of
the cached function alone) is never used with another version of any kernel it calls. A
kernel runs the chunks ``first, first + stride, ...``; :mod:`.dispatch` runs one call per thread, each
with the GIL released, so no numba ``parallel`` entry point (the costliest part to compile) is needed.

A chunk runs every step and every cell of its rows before the next chunk, so its states stay in cache.
The batch is split into chunks of a fixed number of rows (independent of the thread count), which makes
the forward pass bitwise independent of the thread count. The backward pass gives each of its groups of
chunks (``dispatch.sum_groups``: a number fixed by the pass, not by the threads) the chunks ``group, group +
groups, ...`` and its own gradient sums, which are added in group order afterwards: bitwise the same on any
number of threads.
"""
import functools
import hashlib
from pathlib import Path

import numpy as np
from numba import njit

from .codes import CELLS, EULER, EXPEULER, IMPLICIT, INTEGRATOR_CODES, LAST, READOUT_CODES, RK4
from .jit import inner
from .integrator_kernels import (N_WORKSPACES, euler_step, euler_step_vjp, expeuler_step, expeuler_step_vjp,
                                 implicit_step, implicit_step_vjp, rk4_step, rk4_step_vjp, trapezoidal_step,
                                 trapezoidal_step_vjp)
from .readout_kernels import (readout_cells, readout_cells_vjp, readout_derivatives, readout_derivatives_vjp,
                              readout_last, readout_last_vjp)


@inner
def _load_state(src, b0, Y):
    """``Y[k, i] = src[b0 + i, k]`` for a chunk ``Y`` (K, rows, N) of ``src`` (B, K, N)."""
    K, rows, N = Y.shape
    for i in range(rows):
        for k in range(K):
            a, b = src[b0 + i, k], Y[k, i]
            for j in range(N):
                b[j] = a[j]


@inner
def _store_state(Y, b0, dst):
    """``dst[b0 + i, k] = Y[k, i]`` (inverse of :func:`_load_state`)."""
    K, rows, N = Y.shape
    for i in range(rows):
        for k in range(K):
            a, b = Y[k, i], dst[b0 + i, k]
            for j in range(N):
                b[j] = a[j]


@inner
def first_nonfinite_cell(Y):
    """Index of the first cell of ``Y`` (K, rows, N) holding a non-finite value, or -1."""
    K, rows, N = Y.shape
    for k in range(K):
        bad = 0
        for i in range(rows):
            for j in range(N):
                v = Y[k, i, j]
                bad += (v - v) != 0.0          # inf - inf and nan - nan are nan
        if bad:
            return k
    return -1


@inner
def _input_step(n, cur):
    return n if cur.shape[1] > 1 else 0


def source_digest():
    """SHA-256 of the backend's Python sources (part of every cached pass kernel's cache key)."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def pass_kernels(integrator, readout):
    """``(forward_chunks, backward_chunks)`` compiled (lazily, cached on disk) for one integrator and readout.

    Parameters
    ----------
    integrator : {"euler", "expeuler", "implicit", "rk4", "trapezoidal"}
    readout : {"last", "cells", "derivatives"}

    Returns
    -------
    PassKernels
    """
    integ = INTEGRATOR_CODES[integrator]
    rd = READOUT_CODES[readout]
    sources = source_digest()  # in the closure: a key of the on-disk cache, not used by the kernels

    @njit(cache=True, nogil=True)
    def forward_chunks(cs, first, stride, rows, Y0, cur, states, slot_of_step, y, return_sequences,
                       stop_on_nonfinite, nonfinite):
        """Integrate the chunks ``first, first + stride, ...`` of ``rows`` rows (twin of the loop of
        ``reference.forward``); ``nonfinite[c]`` gets chunk c's first non-finite ``(step, cell)`` or
        ``(-1, -1)``.

        Parameters
        ----------
        Y0 : ndarray, shape (B, K, N)
        cur : ndarray, shape (B, T_in, N)
            Input currents; ``T_in`` is 1 for static input.
        states : ndarray, shape (S, B, K, N)
            Kept states; state ``n`` goes to ``states[slot_of_step[n]]`` when that is >= 0.
        slot_of_step : ndarray of int64, shape (T + 1,)
        y : ndarray, shape (B, T_out, W)
        nonfinite : ndarray of int64, shape (n_chunks, 2)
        """
        K, N = cs.K, cs.N
        B = Y0.shape[0]
        T = slot_of_step.shape[0] - 1
        dtype = Y0.dtype
        sources  # noqa: B018  (referenced, so that the closure holds it)
        for c in range(first, nonfinite.shape[0], stride):
            b0 = c * rows
            n_rows = min(B, b0 + rows) - b0
            Y = np.empty((K, n_rows, N), dtype)
            Yn = np.empty((K, n_rows, N), dtype)
            ws = np.empty((N_WORKSPACES, K, n_rows, N), dtype)
            work = np.empty((n_rows, N), dtype)
            _load_state(Y0, b0, Y)
            _store_state(Y, b0, states[slot_of_step[0]])
            bad_step, bad_cell = -1, -1
            for n in range(T):
                t = _input_step(n, cur)
                if integ == EULER:
                    euler_step(cs, Y, cur, b0, t, Yn, ws, work)
                elif integ == EXPEULER:
                    expeuler_step(cs, Y, cur, b0, t, Yn, work)
                elif integ == IMPLICIT:
                    implicit_step(cs, Y, cur, b0, t, Yn, work)
                elif integ == RK4:
                    rk4_step(cs, Y, cur, b0, t, Yn, ws, work)
                else:
                    trapezoidal_step(cs, Y, cur, b0, t, Yn, ws, work)
                if bad_step < 0:
                    cell = first_nonfinite_cell(Yn)
                    if cell >= 0:
                        bad_step, bad_cell = n, cell
                        if stop_on_nonfinite:
                            break
                slot = slot_of_step[n + 1]
                if slot >= 0:
                    _store_state(Yn, b0, states[slot])
                if return_sequences or n == T - 1:
                    n_out = n if return_sequences else 0
                    if rd == LAST:
                        readout_last(Yn, b0, y, n_out)
                    elif rd == CELLS:
                        readout_cells(Yn, b0, y, n_out)
                    else:
                        readout_derivatives(cs, Yn, cur, b0, t, y, n_out, work)
                Y, Yn = Yn, Y
            nonfinite[c, 0] = bad_step
            nonfinite[c, 1] = bad_cell

    @njit(cache=True, nogil=True)
    def backward_chunks(cs, first, stride, n_chunks, rows, cur, states, slot_of_step, every, dy,
                        return_sequences, dV0, dI, node_sums, mat_sums):
        """Discrete adjoint of the pass for the chunks ``first, first + stride, ...`` (twin of the loop of
        ``reference.backward``), summing their gradients into one slot's ``node_sums`` and ``mat_sums``.

        Segments start at every kept state below ``T``; with ``every == 0`` all states are kept and read
        back, otherwise each segment of ``every`` steps is recomputed from its checkpoint.

        Parameters
        ----------
        dy : ndarray, shape (B, T_out, W)
        dV0 : ndarray, shape (B, K, N)
            Receives the gradient of the initial state.
        dI : ndarray, shape (B, T_in, N)
            Receives the gradient of the input currents.
        node_sums, mat_sums : ndarray
            This slot's gradient sums.
        """
        K, N = cs.K, cs.N
        B = dV0.shape[0]
        sources  # noqa: B018  (referenced, so that the closure holds it)
        T = slot_of_step.shape[0] - 1
        length = every if every > 0 else 1
        dtype = dV0.dtype
        nn = cs.coupling_mats.shape[3]
        work_nn = np.empty((nn, nn), dtype)
        for c in range(first, n_chunks, stride):
            b0 = c * rows
            n_rows = min(B, b0 + rows) - b0
            seg = np.empty((length + 1, K, n_rows, N), dtype)
            dY = np.zeros((K, n_rows, N), dtype)
            dYp = np.empty((K, n_rows, N), dtype)
            ws = np.empty((N_WORKSPACES, K, n_rows, N), dtype)
            work = np.empty((n_rows, N), dtype)
            for start in range(T - 1, -1, -1):
                if slot_of_step[start] < 0:
                    continue
                stop = min(T, start + length)
                _load_state(states[slot_of_step[start]], b0, seg[0])
                for j in range(1, stop - start + 1):
                    if every == 0:
                        _load_state(states[slot_of_step[start + j]], b0, seg[j])
                        continue
                    t = _input_step(start + j - 1, cur)
                    if integ == EULER:
                        euler_step(cs, seg[j - 1], cur, b0, t, seg[j], ws, work)
                    elif integ == EXPEULER:
                        expeuler_step(cs, seg[j - 1], cur, b0, t, seg[j], work)
                    elif integ == IMPLICIT:
                        implicit_step(cs, seg[j - 1], cur, b0, t, seg[j], work)
                    elif integ == RK4:
                        rk4_step(cs, seg[j - 1], cur, b0, t, seg[j], ws, work)
                    else:
                        trapezoidal_step(cs, seg[j - 1], cur, b0, t, seg[j], ws, work)
                for n in range(stop - 1, start - 1, -1):
                    t = _input_step(n, cur)
                    Yc, Yn = seg[n - start], seg[n + 1 - start]
                    if return_sequences or n == T - 1:
                        n_out = n if return_sequences else 0
                        if rd == LAST:
                            readout_last_vjp(dy, b0, n_out, dY)
                        elif rd == CELLS:
                            readout_cells_vjp(dy, b0, n_out, dY)
                        else:
                            readout_derivatives_vjp(cs, Yn, cur, b0, t, dy, n_out, dY, dI, work, node_sums,
                                                    mat_sums, work_nn)
                    if integ == EULER:
                        euler_step_vjp(cs, Yc, cur, b0, t, dY, dYp, dI, ws, work, node_sums, mat_sums, work_nn)
                    elif integ == EXPEULER:
                        expeuler_step_vjp(cs, Yc, cur, b0, t, dY, dYp, dI, ws, work, node_sums, mat_sums,
                                          work_nn)
                    elif integ == IMPLICIT:
                        implicit_step_vjp(cs, Yc, Yn, cur, b0, t, dY, dYp, dI, ws, work, node_sums, mat_sums,
                                          work_nn)
                    elif integ == RK4:
                        rk4_step_vjp(cs, Yc, cur, b0, t, dY, dYp, dI, ws, work, node_sums, mat_sums, work_nn)
                    else:
                        trapezoidal_step_vjp(cs, Yc, Yn, cur, b0, t, dY, dYp, dI, ws, work, node_sums, mat_sums,
                                             work_nn)
                    dY, dYp = dYp, dY
            _store_state(dY, b0, dV0)

    return PassKernels(integrator, readout, forward_chunks, backward_chunks)


class PassKernels:
    """The pass kernels of one integrator and readout (see :func:`pass_kernels`)."""

    def __init__(self, integrator, readout, forward_chunks, backward_chunks):
        self.integrator, self.readout = integrator, readout
        self.forward_chunks, self.backward_chunks = forward_chunks, backward_chunks

    def __repr__(self):
        return f"PassKernels(integrator={self.integrator!r}, readout={self.readout!r})"
