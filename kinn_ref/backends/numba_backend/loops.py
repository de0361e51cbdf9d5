"""The compiled step loops: forward and backward passes over chunks of batch rows, in parallel
(twins of the loops of :func:`kinn_ref.reference.forward` and :func:`kinn_ref.reference.backward`).

A chunk runs every step and every cell of its rows before the next chunk, so its states stay in cache.
The batch is split into chunks of a fixed number of rows (independent of the thread count), which makes
the forward pass bitwise independent of the thread count. The backward pass gives each of ``n_slots``
parallel slots the chunks ``slot, slot + n_slots, ...`` and its own gradient sums, which are added in
slot order afterwards: deterministic for a fixed thread count.
"""
import numpy as np
from numba import njit, prange

from .integrator_kernels import N_WORKSPACES, step, step_vjp
from .readout_kernels import readout, readout_vjp


@njit(cache=True)
def _load_state(src, b0, Y):
    """``Y[k, i] = src[b0 + i, k]`` for a chunk ``Y`` (K, rows, N) of ``src`` (B, K, N)."""
    K, rows, N = Y.shape
    for i in range(rows):
        for k in range(K):
            a, b = src[b0 + i, k], Y[k, i]
            for j in range(N):
                b[j] = a[j]


@njit(cache=True)
def _store_state(Y, b0, dst):
    """``dst[b0 + i, k] = Y[k, i]`` (inverse of :func:`_load_state`)."""
    K, rows, N = Y.shape
    for i in range(rows):
        for k in range(K):
            a, b = Y[k, i], dst[b0 + i, k]
            for j in range(N):
                b[j] = a[j]


@njit(cache=True)
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


@njit(cache=True)
def _input_step(n, cur):
    return n if cur.shape[1] > 1 else 0


@njit(cache=True)
def forward_chunk(cs, b0, b1, Y0, cur, states, slot_of_step, y, return_sequences, stop_on_nonfinite):
    """Integrate rows ``b0:b1``; returns ``(step, cell)`` of their first non-finite state or ``(-1, -1)``.

    Parameters
    ----------
    Y0 : ndarray, shape (B, K, N)
    cur : ndarray, shape (B, T_in, N)
        Input currents; ``T_in`` is 1 for static input.
    states : ndarray, shape (S, B, K, N)
        Kept states; state ``n`` goes to ``states[slot_of_step[n]]`` when that is >= 0.
    slot_of_step : ndarray of int64, shape (T + 1,)
    y : ndarray, shape (B, T_out, W)
    """
    K, N = cs.K, cs.N
    rows = b1 - b0
    T = slot_of_step.shape[0] - 1
    Y = np.empty((K, rows, N), Y0.dtype)
    Yn = np.empty((K, rows, N), Y0.dtype)
    ws = np.empty((N_WORKSPACES, K, rows, N), Y0.dtype)
    work = np.empty((rows, N), Y0.dtype)
    _load_state(Y0, b0, Y)
    _store_state(Y, b0, states[slot_of_step[0]])
    bad_step, bad_cell = -1, -1
    for n in range(T):
        t = _input_step(n, cur)
        step(cs, Y, cur, b0, t, Yn, ws, work)
        if bad_step < 0:
            cell = first_nonfinite_cell(Yn)
            if cell >= 0:
                bad_step, bad_cell = n, cell
                if stop_on_nonfinite:
                    return bad_step, bad_cell
        slot = slot_of_step[n + 1]
        if slot >= 0:
            _store_state(Yn, b0, states[slot])
        if return_sequences:
            readout(cs, Yn, cur, b0, t, y, n, work)
        Y, Yn = Yn, Y
    if not return_sequences:
        readout(cs, Y, cur, b0, _input_step(T - 1, cur), y, 0, work)
    return bad_step, bad_cell


@njit(parallel=True, cache=True)
def forward_kernel(cs, Y0, cur, states, slot_of_step, y, return_sequences, stop_on_nonfinite, rows,
                   nonfinite):
    """Forward pass of the whole batch in chunks of ``rows`` rows; ``nonfinite[c]`` gets chunk c's
    first non-finite ``(step, cell)`` (see :func:`forward_chunk`)."""
    B = Y0.shape[0]
    for c in prange(nonfinite.shape[0]):
        b0 = c * rows
        b1 = min(B, b0 + rows)
        s, cell = forward_chunk(cs, b0, b1, Y0, cur, states, slot_of_step, y, return_sequences,
                                stop_on_nonfinite)
        nonfinite[c, 0] = s
        nonfinite[c, 1] = cell


@njit(cache=True)
def backward_chunk(cs, b0, b1, cur, states, slot_of_step, every, dy, return_sequences, dV0, dI,
                   node_sums, mat_sums):
    """Discrete adjoint of the pass for rows ``b0:b1`` (twin of the loop of ``reference.backward``).

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
    rows = b1 - b0
    T = slot_of_step.shape[0] - 1
    length = every if every > 0 else 1
    dtype = dV0.dtype
    seg = np.empty((length + 1, K, rows, N), dtype)
    dY = np.zeros((K, rows, N), dtype)
    dYp = np.empty((K, rows, N), dtype)
    ws = np.empty((N_WORKSPACES, K, rows, N), dtype)
    work = np.empty((rows, N), dtype)
    nn = cs.coupling_mats.shape[3]
    work_nn = np.empty((nn, nn), dtype)
    for start in range(T - 1, -1, -1):
        if slot_of_step[start] < 0:
            continue
        stop = min(T, start + length)
        _load_state(states[slot_of_step[start]], b0, seg[0])
        for j in range(1, stop - start + 1):
            if every == 0:
                _load_state(states[slot_of_step[start + j]], b0, seg[j])
            else:
                step(cs, seg[j - 1], cur, b0, _input_step(start + j - 1, cur), seg[j], ws, work)
        for n in range(stop - 1, start - 1, -1):
            t = _input_step(n, cur)
            Yc, Yn = seg[n - start], seg[n + 1 - start]
            if return_sequences or n == T - 1:
                readout_vjp(cs, Yn, cur, b0, t, dy, n if return_sequences else 0, dY, dI, work, node_sums,
                            mat_sums, work_nn)
            step_vjp(cs, Yc, Yn, cur, b0, t, dY, dYp, dI, ws, work, node_sums, mat_sums, work_nn)
            dY, dYp = dYp, dY
    _store_state(dY, b0, dV0)


@njit(parallel=True, cache=True)
def backward_kernel(cs, cur, states, slot_of_step, every, dy, return_sequences, rows, n_chunks, dV0, dI,
                    node_sums, mat_sums):
    """Backward pass of the whole batch; slot ``s`` of ``node_sums``/``mat_sums`` (first axis) sums the
    chunks ``s, s + n_slots, ...``."""
    B = dV0.shape[0]
    n_slots = node_sums.shape[0]
    for slot in prange(n_slots):
        for c in range(slot, n_chunks, n_slots):
            b0 = c * rows
            b1 = min(B, b0 + rows)
            backward_chunk(cs, b0, b1, cur, states, slot_of_step, every, dy, return_sequences, dV0, dI,
                           node_sums[slot], mat_sums[slot])
