"""Tunables of the numba backend, in one place."""

#: Bytes of chunk state (rows x K x N values) a chunk aims at: small enough to stay in a core's cache.
CHUNK_BYTES = 64 * 1024
#: Dense/kirchhoff chunks hold at least this many rows, so their matrix products run at BLAS speed.
MIN_MATRIX_ROWS = 64
#: Chunks are capped so that a batch splits into at least this many (load balance over threads).
MIN_CHUNKS = 16

#: A pass uses one more thread only per this much work (node-steps, ``B * T * K * N``, weighted by
#: ``1 + N / MATRIX_NODE_WEIGHT`` for dense and kirchhoff couplings): about 2 ms of forward + backward per
#: thread on the 2-core machine of docs/benchmarks.md, where handing a small pass to a second thread cost
#: more than it saved (0 lets every pass use every thread).
MIN_SHARE_WORK = 250_000
MATRIX_NODE_WEIGHT = 5
#: The backward pass keeps its gradient sums in at most MAX_SUM_GROUPS groups of chunks, of at most
#: SUM_GROUP_BYTES in all (``dispatch.sum_groups``); the groups, not the threads, fix the order of the sums,
#: and at most that many threads run a backward pass.
MAX_SUM_GROUPS = 32
SUM_GROUP_BYTES = 8 * 2 ** 20

#: Uncoupled exponential-Euler layers keep every this-many-th state by default and recompute the others in
#: the backward pass (see ``backend.default_interval``).
CELL_RECOMPUTE_INTERVAL = 16
