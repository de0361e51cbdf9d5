"""An adapter run in a process of its own, so that one case cannot end or stall a check.

:class:`AdapterProcess` loads the adapter named by a target (``module:function``) in a spawned worker and
sends it one case at a time. A case that runs past the timeout has its worker stopped; a worker that exits
(``os._exit``, a crash, a signal) ends that case alone; either is the case's error, and the next case
starts a fresh worker. An adapter that fails to load is an :class:`~analysis.golden_adapter.AdapterError`
for the whole run. What the adapter prints goes to standard error, away from the checker's table.
"""
import multiprocessing
import os
import signal
import sys

from .golden_adapter import AdapterError, Outcome, declaration, describe, load_adapter, run_case

#: Seconds a case may run (``kinn-ref golden check --timeout``) and an adapter may take to load.
DEFAULT_TIMEOUT = 120.0
LOAD_TIMEOUT = 120.0


def check_timeout(timeout, name="timeout"):
    """``timeout`` as a float > 0 (``--timeout``); a ValueError otherwise."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 \
            or timeout == float("inf"):
        raise ValueError(f"{name} must be a number of seconds > 0, got {timeout!r}")
    return float(timeout)


class AdapterProcess:
    """The adapter of ``target``, run case by case in a worker process.

    Parameters
    ----------
    target : str
        ``module:function`` or ``path/to/file.py:function``.
    timeout : float
        Seconds each case may take.
    load_timeout : float
        Seconds the worker may take to import and check the adapter.
    """

    def __init__(self, target, timeout=DEFAULT_TIMEOUT, load_timeout=LOAD_TIMEOUT):
        self.target, self.timeout = target, check_timeout(timeout)
        self.load_timeout = check_timeout(load_timeout)
        self._process = self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        """Start the worker and wait until the adapter is loaded (done by :meth:`run` when needed).

        Raises
        ------
        AdapterError
            When the adapter does not load, its process ends while loading, or loading takes longer than
            ``load_timeout``.
        """
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, self.target), daemon=True,
                                    name="kinn-golden-adapter")
        self._process.start()
        child.close()
        if not self._conn.poll(self.load_timeout):
            self._stop()
            raise AdapterError(f"impl {self.target!r} did not load within {self.load_timeout:g} s")
        try:
            message = self._conn.recv()
        except (EOFError, OSError):
            how = self._reap()
            raise AdapterError(f"impl {self.target!r}: the adapter's process ended while loading it ({how})") \
                from None
        if message[0] != "ready":
            self._stop()
            raise AdapterError(message[1])

    def run(self, inputs, info):
        """Run one case (``inputs`` and ``info`` as for :func:`~analysis.golden_adapter.run_case`).

        Returns
        -------
        Outcome
        """
        if self._process is None:
            self.start()
        try:
            self._conn.send(("case", inputs, info))
        except (BrokenPipeError, OSError):
            how = self._reap()
            return Outcome("error", detail=f"the adapter's process ended before this case ({how})")
        if not self._conn.poll(self.timeout):
            self._stop()
            return Outcome("error", detail=f"timed out after {self.timeout:g} s (the adapter's process was "
                                           "stopped)")
        try:
            return self._conn.recv()[1]
        except (EOFError, OSError):
            how = self._reap()
            return Outcome("error", detail=f"the adapter's process ended during this case ({how})")

    def close(self):
        """Stop the worker (it is told to finish; one that does not is killed)."""
        if self._process is None:
            return
        try:
            self._conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self._process.join(5)
        self._stop()

    def _stop(self):
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self._reap()

    def _reap(self):
        """Join the ended worker; return how it ended, in words."""
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is None:
            return "no process"
        process.join(5)
        code = process.exitcode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"


def _serve(conn, target):
    """The worker: load the adapter, then answer ``("case", inputs, info)`` until ``("stop",)``."""
    os.dup2(2, 1)                              # the adapter's output goes to stderr, never into the table
    sys.stdout = sys.stderr
    try:
        adapter = load_adapter(target)
        decl = declaration(adapter)
    except AdapterError as exc:
        conn.send(("load-error", str(exc)))
        return
    except (Exception, SystemExit) as exc:
        conn.send(("load-error", f"impl {target!r}: {describe(exc)}"))
        return
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] != "case":
            return
        _, inputs, info = message
        conn.send(("outcome", run_case(adapter, decl, inputs, info)))
