"""Says on stderr, once per key, when a first call spends more than a moment compiling.

A backend compiles its kernels on a first call with new argument types, or loads them from its on-disk cache
(fast). Which of the two will happen is not known before the call, so a timer gives the notice only if the
first call is still running after :data:`NOTICE_AFTER_S` seconds.
"""
import logging
import threading

logger = logging.getLogger("kinn_ref.compile")

#: Seconds a first call may take before the notice is given.
NOTICE_AFTER_S = 2.0

_SEEN = set()
_LOCK = threading.Lock()


class first_call:
    """Context manager around a call: the first time ``key`` is seen in this process, ``message()`` goes to the
    ``kinn_ref.compile`` logger (a warning, so it shows on stderr by default) if the call is still running
    after :data:`NOTICE_AFTER_S` seconds.

    Parameters
    ----------
    key : hashable
        What identifies one compilation (backend, kernel, dtype, ...).
    message : callable
        ``message() -> str``, called only when the notice is given.
    """

    def __init__(self, key, message):
        self.key, self.message = key, message
        self.timer = None

    def __enter__(self):
        with _LOCK:
            first = self.key not in _SEEN
            _SEEN.add(self.key)
        if first:
            self.timer = threading.Timer(NOTICE_AFTER_S, self._notice)
            self.timer.daemon = True
            self.timer.start()
        return self

    def _notice(self):
        logger.warning("%s", self.message())

    def __exit__(self, *exc):
        if self.timer is not None:
            self.timer.cancel()
        return False
