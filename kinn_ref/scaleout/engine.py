"""Run the independent points of a sweep serially, on a local Dask cluster or on an existing one.

A sweep is a set of points, each a key (a file-safe name), a top-level function and its arguments. Points
already in the :class:`PointStore` (an earlier, interrupted run of the same sweep) are not computed again;
every other point's result is written to the store atomically as soon as it arrives, so a sweep killed at
any moment loses at most the points in flight. The function is the same whatever runs it, so the results
are those of the serial run: Dask only moves the calls to other processes.

Engines:

- serial (default): the calls in this process, in key order;
- ``workers=N``: a :class:`distributed.LocalCluster` of N worker processes of one thread each;
- ``scheduler=ADDRESS``: the workers of an existing Dask cluster (the same kinn_ref on every worker, and a
  folder every worker can write for the outputs).

Each call on a worker sets numba's (and the BLAS pools') threads to the worker host's cores divided by the
task slots on that host, so workers do not oversubscribe the cores; the workers see the on-disk kernel caches
of this process's environment (``NUMBA_CACHE_DIR``, ``KINN_REF_CUDA_CACHE_DIR``) so a kernel compiles once.

A point whose call raises is retried (``retries`` times, on any worker) with a warning per failed attempt; a
worker that dies is replaced by its nanny and its points run again elsewhere. Points that still fail are
reported together by :class:`SweepError` once every other point has finished.
"""
import hashlib
import json
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import check_positive_int
from ..training.atomic import atomic_write_text, remove_stale_temporaries

logger = logging.getLogger(__name__)

#: Environment variables a local cluster's workers inherit explicitly: the on-disk kernel caches.
CACHE_VARIABLES = ("NUMBA_CACHE_DIR", "KINN_REF_CUDA_CACHE_DIR")

#: Retries of a failed point by default.
DEFAULT_RETRIES = 2

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+,-]*$")


class SweepError(RuntimeError):
    """Some points of a sweep failed after every retry; the finished points are persisted.

    Attributes
    ----------
    failures : dict of str -> str
        Point key -> the last error, in one line.
    """

    def __init__(self, failures, total):
        self.failures = dict(failures)
        lines = "; ".join(f"{k}: {v}" for k, v in sorted(self.failures.items()))
        super().__init__(f"{len(self.failures)} of {total} points failed after every retry ({lines}); the other "
                         "points are saved, and running the same command again retries only the failed ones")


def digest(*objects):
    """Short SHA-256 of ``objects`` (arrays by dtype, shape and bytes; the rest by canonical JSON or repr):
    what a stored point's inputs were, so a changed sweep does not reuse it."""
    h = hashlib.sha256()

    def feed(obj):
        if isinstance(obj, np.ndarray):
            a = np.ascontiguousarray(obj)
            h.update(f"array|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
        elif isinstance(obj, dict):
            h.update(b"dict|")
            for k in sorted(obj, key=str):
                feed(str(k))
                feed(obj[k])
        elif isinstance(obj, (list, tuple)):
            h.update(f"seq|{len(obj)}|".encode())
            for v in obj:
                feed(v)
        else:
            h.update(f"{type(obj).__name__}|{obj!r}|".encode())

    for obj in objects:
        feed(obj)
    return h.hexdigest()[:20]


@dataclass(frozen=True)
class Point:
    """One point of a sweep: ``function(*args)`` under the file-safe ``key``; ``fingerprint`` is the digest of
    what the result depends on (:func:`digest`)."""

    key: str
    function: object
    args: tuple
    fingerprint: str

    def __post_init__(self):
        if not isinstance(self.key, str) or not _KEY.match(self.key):
            raise ValueError(f"point key must be a file-safe name (letters, digits, '_.=+,-'), got {self.key!r}")


class PointStore:
    """One JSON file per finished point in ``folder`` (``KEY.json``: the fingerprint and the result), each
    written atomically. A file whose fingerprint differs from the point's is not used (the sweep changed)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def path(self, key):
        return self.folder / f"{key}.json"

    def load(self, point):
        """The stored result of ``point``, or None when it is not stored (or stored for other inputs)."""
        path = self.path(point.key)
        remove_stale_temporaries(path)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"sweep point file {path} cannot be read ({exc}); remove it to compute the point "
                             "again") from None
        if not isinstance(record, dict) or record.get("fingerprint") != point.fingerprint:
            return None
        return record.get("result")

    def save(self, point, result):
        atomic_write_text(self.path(point.key), json.dumps({"key": point.key, "fingerprint": point.fingerprint,
                                                            "result": result}, sort_keys=True) + "\n")

    def clear(self):
        """Remove the store's files and its folder (after the sweep's own outputs are written)."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if path.is_file() and (path.suffix in (".json", ".tmp")):
                path.unlink()
        try:
            self.folder.rmdir()
        except OSError:
            pass


def add_engine_arguments(parser, progress_flag=True):
    """``--workers``, ``--scheduler``, ``--retries`` (and ``--no-progress``) of a sweeping command."""
    group = parser.add_argument_group("scale-out (Dask; default: serial in this process)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None,
                       help="run the points on a local Dask cluster of this many worker processes")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run the points on the Dask cluster at this scheduler address (tcp://host:8786)")
    group.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="retries of a point that fails")
    if progress_flag:
        group.add_argument("--no-progress", action="store_true", help="no progress bar")


def engine_from_args(args):
    """The :class:`SweepEngine` the arguments ask for (ValueError naming a bad one)."""
    return SweepEngine(workers=args.workers, scheduler=args.scheduler, retries=args.retries,
                       progress=not getattr(args, "no_progress", False))


def _threads_for(slots, cores):
    return max(1, (cores or 1) // max(1, slots))


def limit_threads(n):
    """Set numba's threads (at most its ``NUMBA_NUM_THREADS``) and the BLAS/OpenMP pools' to ``n``."""
    import numba
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    from threadpoolctl import threadpool_limits
    threadpool_limits(int(n))


def run_on_worker(function, args, slots_by_host):
    """A point's call on a Dask worker: threads limited to the host's cores over its task slots, then
    ``function(*args)``."""
    from distributed import get_worker
    worker = get_worker()
    host = worker.address.rsplit(":", 1)[0]
    limit_threads(_threads_for(slots_by_host.get(host, worker.state.nthreads), os.cpu_count()))
    return function(*args)


class SweepEngine:
    """Where the points run: serially here, on a local cluster or on an existing one.

    Use as a context manager; :meth:`run` computes the points.

    Parameters
    ----------
    workers : int, optional
        Worker processes of a local cluster (>= 1).
    scheduler : str, optional
        Address of an existing Dask scheduler.
    retries : int
        Retries of a failed point (>= 0).
    progress : bool
        A progress bar of points done/total on stderr.
    """

    def __init__(self, workers=None, scheduler=None, retries=DEFAULT_RETRIES, progress=True):
        if workers is not None and scheduler is not None:
            raise ValueError("--workers and --scheduler exclude each other: a local cluster or an existing one")
        self.workers = None if workers is None else check_positive_int("--workers", workers)
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise ValueError(f"--scheduler must be a scheduler address such as tcp://host:8786, got {scheduler!r}")
        self.scheduler = scheduler
        self.retries = check_positive_int("--retries", retries, minimum=0)
        self.progress = progress
        self.client = None
        self._cluster = None

    @property
    def kind(self):
        return "serial" if self.workers is None and self.scheduler is None else \
            "local" if self.workers is not None else "scheduler"

    def describe(self):
        return {"serial": "serially in this process", "local": f"on a local Dask cluster of {self.workers} "
                "workers", "scheduler": f"on the Dask cluster at {self.scheduler}"}[self.kind]

    def __enter__(self):
        if self.kind == "serial":
            return self
        from .._optional import require
        distributed = require("distributed", "--workers / --scheduler")
        logging.getLogger("distributed").setLevel(max(logging.ERROR, logging.getLogger().level))
        if self.kind == "local":
            env = {k: os.environ[k] for k in CACHE_VARIABLES if k in os.environ}
            env["NUMBA_NUM_THREADS"] = str(_threads_for(self.workers, os.cpu_count()))
            self._cluster = distributed.LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                     dashboard_address=None, env=env, silence_logs=logging.ERROR)
            self.client = distributed.Client(self._cluster)
        else:
            try:
                self.client = distributed.Client(self.scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise ValueError(f"--scheduler {self.scheduler}: cannot connect ({exc})") from None
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = self._cluster = None
        return False

    def worker_pids(self):
        """Process id of every worker (empty when serial)."""
        return {} if self.client is None else self.client.run(os.getpid)

    def _slots_by_host(self):
        slots = {}
        for address, info in self.client.scheduler_info()["workers"].items():
            host = address.rsplit(":", 1)[0]
            slots[host] = slots.get(host, 0) + int(info.get("nthreads", 1))
        return slots

    def run(self, points, store, label="sweep", on_result=None):
        """Compute every point not yet in ``store``; returns ``{key: result}`` for all points.

        Parameters
        ----------
        points : sequence of Point
        store : PointStore
        label : str
            The progress bar's label.
        on_result : callable, optional
            ``on_result(key, result)`` in this process after each new point is persisted.

        Raises
        ------
        SweepError
            When points failed after every retry (every other point is computed and persisted first).
        """
        points = list(points)
        keys = [p.key for p in points]
        if len(set(keys)) != len(keys):
            duplicates = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"point keys must be unique, got duplicates {duplicates}")
        results = {}
        for p in points:
            stored = store.load(p)
            if stored is not None:
                results[p.key] = stored
        pending = [p for p in points if p.key not in results]
        if results:
            logger.info("%s: %d of %d points already computed, %d to go", label, len(results), len(points),
                        len(pending))
        bar = self._bar(label, len(points), len(results))

        def finish(point, result):
            store.save(point, result)
            results[point.key] = result
            if bar is not None:
                bar.update(1)
            if on_result is not None:
                on_result(point.key, result)

        try:
            failures = self._run_serial(pending, finish) if self.client is None else \
                self._run_dask(pending, finish)
        finally:
            if bar is not None:
                bar.close()
        if failures:
            raise SweepError(failures, len(points))
        return {k: results[k] for k in keys}

    def _bar(self, label, total, initial):
        if not self.progress:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=total, initial=initial, desc=label, unit="point", file=sys.stderr, leave=False,
                    dynamic_ncols=True, mininterval=0.5)

    def _failed(self, point, attempt, exc):
        text = " ".join(str(exc).split()) or type(exc).__name__
        text = f"{type(exc).__name__}: {text}"
        if attempt <= self.retries:
            warnings.warn(f"point {point.key} failed (attempt {attempt} of {self.retries + 1}): {text}; retrying",
                          stacklevel=3)
        return text

    def _run_serial(self, pending, finish):
        failures = {}
        for point in pending:
            for attempt in range(1, self.retries + 2):
                try:
                    result = point.function(*point.args)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:   # a point's failure is reported, the sweep goes on
                    failures[point.key] = self._failed(point, attempt, exc)
                    continue
                failures.pop(point.key, None)
                finish(point, result)
                break
        return failures

    def _run_dask(self, pending, finish):
        from distributed import as_completed
        slots = self._slots_by_host()
        attempts, failures, by_future = {}, {}, {}

        def submit(point):
            attempts[point.key] = attempts.get(point.key, 0) + 1
            future = self.client.submit(run_on_worker, point.function, point.args, slots, pure=False,
                                        key=f"{point.key}-{attempts[point.key]}-{point.fingerprint}")
            by_future[future.key] = point
            return future

        queue = as_completed([submit(p) for p in pending], with_results=False)
        for future in queue:
            point = by_future.pop(future.key)
            try:
                result = future.result()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # the call raised, or its worker died too often (KilledWorker)
                failures[point.key] = self._failed(point, attempts[point.key], exc)
                if attempts[point.key] <= self.retries:
                    queue.add(submit(point))
                continue
            failures.pop(point.key, None)
            finish(point, result)
        return failures
