"""Tunables of the numba backend, in one place."""

#: Bytes of chunk state (rows x K x N values) a chunk aims at: small enough to stay in a core's cache.
CHUNK_BYTES = 64 * 1024
#: Dense/kirchhoff chunks hold at least this many rows, so their matrix products run at BLAS speed.
MIN_MATRIX_ROWS = 64
#: Chunks are capped so that a batch splits into at least this many (load balance over threads).
MIN_CHUNKS = 16

#: Uncoupled exponential-Euler layers keep every this-many-th state by default and recompute the others in
#: the backward pass (see ``backend.default_interval``).
CELL_RECOMPUTE_INTERVAL = 16
