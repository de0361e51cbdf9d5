"""The numba backend's compile notice: once per kernel and dtype, when a first call compiles for more than
:data:`kinn_ref.backends.compile_notice.NOTICE_AFTER_S` seconds (the timer is
:class:`kinn_ref.backends.compile_notice.first_call`)."""
from .. import compile_notice as _notice


def cache_location(dispatcher):
    """Where numba keeps ``dispatcher``'s compiled code on disk (or why it keeps none)."""
    cache = getattr(dispatcher, "_cache", None)
    path = getattr(cache, "_cache_path", None)
    return str(path) if path else "not cached on disk"


def first_call(key, what, dispatcher):
    """:class:`~kinn_ref.backends.compile_notice.first_call` with the numba backend's message.

    Parameters
    ----------
    key : hashable
        What identifies one compilation (kernel, dtype, ...).
    what : str
        What is compiled, for the message.
    dispatcher : numba dispatcher
        The kernel, for its cache location.
    """
    return _notice.first_call(("numba", key), lambda: (
        f"kinn-ref: compiling the numba kernels for {what} (once per spec and dtype; the compiled code is cached "
        f"in {cache_location(dispatcher)} for later runs)"))
