"""Says on stderr, once per kernel and dtype, when a first call spends more than a moment compiling.

numba compiles a pass kernel on its first call with new argument types, or loads it from its on-disk cache
(fast). Which of the two will happen is not known before the call, so a timer announces the compilation
only if the first call is still running after :data:`NOTICE_AFTER_S` seconds.
"""
import logging
import threading

logger = logging.getLogger("kinn_ref.compile")

#: Seconds a first call may take before the notice is given.
NOTICE_AFTER_S = 2.0

_SEEN = set()
_LOCK = threading.Lock()


def cache_location(dispatcher):
    """Where numba keeps ``dispatcher``'s compiled code on disk (or why it keeps none)."""
    cache = getattr(dispatcher, "_cache", None)
    path = getattr(cache, "_cache_path", None)
    return str(path) if path else "not cached on disk"


class first_call:
    """Context manager around a kernel call: the first time ``key`` is seen in this process, a notice goes to
    the ``kinn_ref.compile`` logger (a warning, so it shows on stderr by default) if the call is still
    running after :data:`NOTICE_AFTER_S` seconds.

    Parameters
    ----------
    key : hashable
        What identifies one compilation (kernel, dtype, ...).
    what : str
        What is compiled, for the message.
    dispatcher : numba dispatcher
        The kernel, for its cache location.
    """

    def __init__(self, key, what, dispatcher):
        self.key, self.what, self.dispatcher = key, what, dispatcher
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
        logger.warning("kinn-ref: compiling the numba kernels for %s (once per spec and dtype; the compiled code "
                       "is cached in %s for later runs)", self.what, cache_location(self.dispatcher))

    def __exit__(self, *exc):
        if self.timer is not None:
            self.timer.cancel()
        return False
