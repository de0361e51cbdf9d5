"""Runs a pass kernel of :mod:`.loops` on the backend's threads: one call per thread, each over its share
of the chunks (``first = thread, stride = threads``), with the GIL released inside the kernel.

The thread count is numba's (``NUMBA_NUM_THREADS``, :func:`numba.set_num_threads`), so the backend obeys
the same setting as it did with numba's parallel loops.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

from . import config

_LOCK = threading.Lock()
_POOL = {"executor": None, "size": 0}


def thread_count():
    """Threads a pass uses: numba's current setting."""
    return numba.get_num_threads()


def _work(spec, batch, n_steps):
    """Node-steps of a pass, weighted by ``1 + N / MATRIX_NODE_WEIGHT`` for dense and kirchhoff couplings."""
    work = batch * n_steps * spec.order * spec.total_nodes
    if spec.coupling in ("dense", "kirchhoff"):
        work *= 1 + spec.total_nodes / config.MATRIX_NODE_WEIGHT
    return work


def share_count(spec, batch, n_steps, n_chunks):
    """Threads a pass over ``batch`` rows and ``n_steps`` steps uses: numba's setting, at most one per chunk,
    and one per :data:`config.MIN_SHARE_WORK` of work (a thread's hand-off costs about as much as a small pass
    does). The chunks are the same whatever the count, so this changes no result of the forward pass."""
    n = min(thread_count(), n_chunks)
    if config.MIN_SHARE_WORK > 0:
        n = min(n, int(_work(spec, batch, n_steps) // config.MIN_SHARE_WORK))
    return max(1, n)


def sum_groups(spec, batch, n_steps, n_chunks, group_bytes):
    """Groups of chunks whose gradient sums the backward pass keeps apart (chunk ``c`` adds to group
    ``c % groups``, in chunk order; the groups are then added in order). The count depends on the pass
    only, never on the thread count, so the gradients are bitwise the same on any number of threads: at
    most one group per chunk, :data:`config.MAX_SUM_GROUPS`, :data:`config.SUM_GROUP_BYTES` of sums in
    all, and one group per :data:`config.MIN_SHARE_WORK` of work (at least one)."""
    n = min(n_chunks, config.MAX_SUM_GROUPS, max(1, config.SUM_GROUP_BYTES // max(1, group_bytes)))
    if config.MIN_SHARE_WORK > 0:
        n = min(n, int(_work(spec, batch, n_steps) // config.MIN_SHARE_WORK))
    return max(1, n)


def _executor(size):
    with _LOCK:
        if _POOL["size"] < size:
            if _POOL["executor"] is not None:
                _POOL["executor"].shutdown(wait=False)
            _POOL["executor"] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="kinn-ref-numba")
            _POOL["size"] = size
        return _POOL["executor"]


def run_shares(n_shares, call):
    """``call(share)`` for ``share`` in ``range(n_shares)``, one thread each (1: in the calling thread).

    ``call`` runs a pass kernel, which releases the GIL, over the chunks ``share, share + n_shares, ...``.
    Errors raised in a share are raised here, after every share has finished.
    """
    if n_shares == 1:
        call(0)
        return
    pool = _executor(n_shares)
    futures = [pool.submit(call, s) for s in range(n_shares)]
    for f in futures:
        f.result()
