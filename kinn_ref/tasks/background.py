"""Work beside the main process, in a second one (used by ``kinn-ref demo``): kernels compiled ahead,
and whole training runs.

The numba backend compiles a kernel the first time a spec runs and keeps it in its on-disk cache; a
process that finds it there loads it in a fraction of a second. A training run on the numba backend with
small batches uses one core. On a machine with two cores or more, :class:`BackgroundWarmUp` starts a
second process that

- trains the ``train`` runs (:func:`~kinn_ref.tasks.run.train_task`, writing their run folders: checkpoint,
  metrics and ``result.json``), one after the other, while the main process does the rest of its work;
  :meth:`BackgroundWarmUp.wait_trained` waits for one and says whether it finished;
- then makes the first forward and backward pass of each model of ``models``
  (:func:`~kinn_ref.tasks.run.warm_up`), so that training in the main process finds its kernels compiled.
  Before a task starts, :meth:`BackgroundWarmUp.wait` waits for that task's models, so that a kernel is
  never compiled by both processes at once.

Nothing depends on it for correctness: a run trains to the same bits in either process (the numba
backend's results do not depend on its thread count), and if the second process fails or cannot write the
cache, the main process trains and compiles what it needs itself, as it does without it.

Run as ``python -m kinn_ref.tasks.background BACKEND [--train JSON ...] TASK:MODEL ...``: prints
``trained TASK MODEL`` after each run, ``ready TASK MODEL SECONDS`` after each warm-up and
``skipped REASON`` when there is nothing to gain.
"""
import json
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


def second_core_available():
    """Whether this process may use more than one core (a second process would otherwise slow it)."""
    try:
        return len(os.sched_getaffinity(0)) > 1
    except AttributeError:                                          # not on Linux
        return (os.cpu_count() or 1) > 1


class BackgroundWarmUp:
    """A second process training the runs of ``train`` and then compiling the kernels of ``models``
    (``(task, model)`` pairs) for ``backend``.

    Only the ``numba`` backend gains from it, and only with a second core; otherwise nothing is started.
    Use as a context manager (the process is stopped on exit, also on errors and Ctrl-C).

    Parameters
    ----------
    backend : str
    models : sequence of (str, str)
        ``(task, model)`` whose first pass is made ahead.
    train : sequence of dict, optional
        :func:`~kinn_ref.tasks.run.train_task` arguments of each run trained there: ``task``, ``model``,
        ``size``, ``seed``, ``out_dir``, optionally ``overrides`` (a dict) and ``data_size`` (the size of
        the task's data when it differs from ``size``), all JSON-serialisable.
    """

    def __init__(self, backend, models, train=()):
        self.backend, self.models = backend, [tuple(m) for m in models]
        self.train = [dict(job) for job in train]
        self.ready, self.seconds, self.waited, self.skipped, self.failure = set(), {}, {}, None, None
        self.trained = set()
        self.process = None
        if backend == "numba" and (self.models or self.train) and second_core_available():
            env = dict(os.environ, NUMBA_NUM_THREADS="1")        # the main process keeps the other cores
            self._errors = tempfile.TemporaryFile("w+")
            command = [sys.executable, "-m", "kinn_ref.tasks.background", backend]
            for job in self.train:
                command += ["--train", json.dumps(job, sort_keys=True)]
            command += [f"{t}:{m}" for t, m in self.models]
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._errors,
                                            stdin=subprocess.DEVNULL, text=True, env=env)
        else:
            self.train = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def trains(self, task, model):
        """Whether the second process was asked to train ``model`` on ``task``."""
        return any(job["task"] == task and job["model"] == model for job in self.train)

    def _read_until(self, done):
        while self.process is not None and not done():
            line = self.process.stdout.readline()
            if not line:                                           # the process ended
                self._reap()
                break
            words = line.split()
            if words[:1] == ["ready"] and len(words) == 4:
                self.ready.add((words[1], words[2]))
                self.seconds[(words[1], words[2])] = float(words[3])
            elif words[:1] == ["trained"] and len(words) == 3:
                self.trained.add((words[1], words[2]))
            elif words[:1] == ["skipped"]:
                self.skipped = line.partition(" ")[2].strip()

    def wait(self, task):
        """Block until every model of ``task`` is warmed up (or the process has ended). Returns seconds waited."""
        start = time.perf_counter()
        wanted = {m for m in self.models if m[0] == task}
        self._read_until(lambda: wanted <= self.ready)
        self.waited[task] = self.waited.get(task, 0.0) + time.perf_counter() - start
        return self.waited[task]

    def wait_trained(self, task, model):
        """Block until the second process has trained ``model`` on ``task`` (or has ended).

        Returns
        -------
        finished : bool
            True when the run's folder holds its finished result; False when the second process ended
            without it (see :attr:`failure`), so the caller trains the run itself.
        seconds : float
            Seconds waited.
        """
        start = time.perf_counter()
        self._read_until(lambda: (task, model) in self.trained)
        seconds = time.perf_counter() - start
        self.waited[f"{task}-{model}"] = seconds
        return (task, model) in self.trained, seconds

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


def _parse(argv):
    backend, train, pairs, rest = argv[0], [], [], list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--train":
            train.append(json.loads(rest.pop(0)))
        else:
            pairs.append(arg.split(":", 1))
    return backend, train, pairs


def main(argv):
    backend, train, pairs = _parse(argv)
    reason = numba_cache_writable() if backend == "numba" else f"nothing to compile ahead for {backend}"
    if reason is not None and not train:
        print(f"skipped {reason}", flush=True)
        return 0
    from .registry import get_task
    from .run import train_task, warm_up
    for job in train:
        data = get_task(job["task"]).make_data(job["data_size"], job["seed"]) if "data_size" in job else None
        train_task(job["task"], job["model"], size=job["size"], seed=job["seed"], backend=backend,
                   out_dir=job["out_dir"], dataset=data, progress=False, **job.get("overrides", {}))
        print(f"trained {job['task']} {job['model']}", flush=True)
    if reason is not None:
        print(f"skipped {reason}", flush=True)
        return 0
    for task, model in pairs:
        seconds = warm_up(task, model, backend=backend)
        print(f"ready {task} {model} {seconds:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
