"""Compiling a run's kernels ahead of time, in a second process (used by ``kinn-ref demo``).

The numba backend compiles a kernel the first time a spec runs and keeps it in its on-disk cache; a
process that finds it there loads it in a fraction of a second. ``kinn-ref demo`` spends its first seconds
on checks that run on the NumPy reference on one core; meanwhile :class:`BackgroundWarmUp` makes, in a
second process, the first forward and backward pass of each model the demo trains later
(:func:`~kinn_ref.tasks.run.warm_up`), so that training finds its kernels compiled. Before a task starts,
:meth:`BackgroundWarmUp.wait` waits for that task's models, so that a kernel is never compiled by both
processes at once.

Nothing depends on it for correctness: if the second process fails or cannot write the cache, the
training process compiles what it needs itself, as it does without it.

Run as ``python -m kinn_ref.tasks.background BACKEND TASK:MODEL ...``: prints ``ready TASK MODEL SECONDS``
after each model and ``skipped REASON`` when there is nothing to gain.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def numba_cache_writable():
    """Whether the numba backend's kernels can be saved to its on-disk cache here (else ``None``: the reason)."""
    from ..backends.numba_backend.compile_notice import cache_location
    from ..backends.numba_backend.loops import pass_kernels
    where = cache_location(pass_kernels("expeuler", "cells").forward_chunks)
    if where == "not cached on disk":
        return "numba keeps no on-disk cache here"
    path = Path(where)
    while not path.exists() and path != path.parent:
        path = path.parent
    return None if os.access(path, os.W_OK) else f"the numba cache folder {where} is not writable"


class BackgroundWarmUp:
    """A second process compiling the kernels of ``models`` (``(task, model)`` pairs) for ``backend``.

    Only the ``numba`` backend gains from it; for any other backend nothing is started. Use as a context
    manager (the process is stopped on exit, also on errors and Ctrl-C).
    """

    def __init__(self, backend, models):
        self.backend, self.models = backend, [tuple(m) for m in models]
        self.ready, self.seconds, self.waited, self.skipped, self.failure = set(), {}, {}, None, None
        self.process = None
        if backend == "numba" and self.models:
            env = dict(os.environ, NUMBA_NUM_THREADS="1")        # compiling is single-threaded
            self._errors = tempfile.TemporaryFile("w+")
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kinn_ref.tasks.background", backend] + [f"{t}:{m}" for t, m in self.models],
                stdout=subprocess.PIPE, stderr=self._errors, stdin=subprocess.DEVNULL, text=True, env=env)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def wait(self, task):
        """Block until every model of ``task`` is warmed up (or the process has ended). Returns seconds waited."""
        start = time.perf_counter()
        wanted = {m for m in self.models if m[0] == task}
        while self.process is not None and not wanted <= self.ready:
            line = self.process.stdout.readline()
            if not line:                                           # the process ended
                self._reap()
                break
            words = line.split()
            if words[:1] == ["ready"] and len(words) == 4:
                self.ready.add((words[1], words[2]))
                self.seconds[(words[1], words[2])] = float(words[3])
            elif words[:1] == ["skipped"]:
                self.skipped = line.partition(" ")[2].strip()
        self.waited[task] = time.perf_counter() - start
        return self.waited[task]

    def _reap(self):
        if self.process is not None:
            code = self.process.wait()
            self.process.stdout.close()
            self.process = None
            self._errors.seek(0)
            lines = [line.strip() for line in self._errors if line.strip()]
            self._errors.close()
            if code not in (0, -signal.SIGTERM):
                self.failure = lines[-1] if lines else f"exit status {code}"

    def close(self):
        """Stop the process if it is still running."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        self._reap()


def main(argv):
    backend, pairs = argv[0], [a.split(":", 1) for a in argv[1:]]
    reason = numba_cache_writable() if backend == "numba" else f"nothing to compile ahead for {backend}"
    if reason is not None:
        print(f"skipped {reason}", flush=True)
        return 0
    from .run import warm_up
    for task, model in pairs:
        seconds = warm_up(task, model, backend=backend)
        print(f"ready {task} {model} {seconds:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
