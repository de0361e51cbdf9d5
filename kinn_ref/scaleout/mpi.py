"""MPI for data-parallel training: the ranks, their shards of a batch, and an all-reduce in a fixed order.

The all-reduce gathers every rank's vector on every rank (``Allgather``) and sums them in rank order, so its
result depends on the values alone, never on message timing or on the MPI's reduction algorithm: every rank
holds the same bits, and a run is reproducible for a given rank count. Each vector carries a status flag, so
a rank whose step failed tells every other rank in the same collective, and all of them stop together.
"""
import os

import numpy as np

from .._optional import require


class DistributedTrainingError(RuntimeError):
    """A rank failed; every rank raises this, naming the rank(s) that failed and why.

    Attributes
    ----------
    status : int
        The exit status of the command: 2 for an error a user can mend (a bad argument, found by every rank
        before training), 1 for a failed step.
    """

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def mpi():
    """The ``mpi4py.MPI`` module (MissingExtraError naming the ``mpi`` extra when absent)."""
    require("mpi4py", "--distributed mpi")
    from mpi4py import MPI
    return MPI


class MpiCommunicator:
    """The ranks of an MPI communicator (default ``COMM_WORLD``).

    Attributes
    ----------
    rank, size : int
    local_rank, local_size : int
        The rank among, and the number of, the ranks on this host (which GPU a rank drives, how many
        threads it takes).
    """

    def __init__(self, comm=None):
        MPI = mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()

    @property
    def is_root(self):
        return self.rank == 0

    def shard(self, n):
        """``(start, stop)`` of this rank's contiguous share of ``n`` rows (sizes differ by at most one)."""
        base, extra = divmod(int(n), self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def allreduce_sum(self, vector, failure=None):
        """Sum of every rank's ``vector`` (float64, one length on every rank), in rank order.

        Parameters
        ----------
        vector : ndarray of float64, shape (n,)
        failure : str, optional
            This rank's step failed with this message (``vector`` is then ignored).

        Returns
        -------
        ndarray of float64, shape (n,)

        Raises
        ------
        DistributedTrainingError
            On every rank, when any rank passed a ``failure``.
        """
        local = np.empty(vector.size + 1, np.float64)
        local[0] = 0.0 if failure is None else 1.0
        local[1:] = 0.0 if failure is not None else vector
        gathered = np.empty((self.size, local.size), np.float64)
        self.comm.Allgather(local, gathered)
        if np.any(gathered[:, 0] != 0.0):
            by_message = {}
            for r, m in enumerate(self.comm.allgather(failure)):
                if m is not None:
                    by_message.setdefault(m, []).append(str(r))
            failed = "; ".join(f"rank{'s' if len(r) > 1 else ''} {', '.join(r)}: {m}" for m, r in by_message.items())
            raise DistributedTrainingError(f"{failed} (of {self.size} ranks; every rank stops)")
        total = gathered[0, 1:].copy()
        for r in range(1, self.size):
            total += gathered[r, 1:]
        return total

    def agreed(self, function, *args, expected=(ValueError, OSError, ImportError)):
        """``function(*args)`` on every rank, then agreement: when it raised an ``expected`` error on any rank,
        every rank raises :class:`DistributedTrainingError` (status 2) with the message, so no rank goes on
        to a collective that the others never reach."""
        failure = None
        try:
            result = function(*args)
        except expected as exc:
            failure = " ".join(str(exc).split()) or type(exc).__name__
        try:
            self.allreduce_sum(np.zeros(0), failure)
        except DistributedTrainingError as exc:
            raise DistributedTrainingError(str(exc), status=2) from None
        return result

    def broadcast(self, value):
        """Rank 0's picklable ``value`` on every rank."""
        return self.comm.bcast(value, root=0)

    def abort(self, status=1):
        """End every rank (after an error this rank alone met, outside the collectives)."""
        self.comm.Abort(status)


def threads_per_rank(communicator, cores=None):
    """Cores of this host over its ranks (at least 1): numba's threads per rank."""
    return max(1, (cores or os.cpu_count() or 1) // communicator.local_size)
