"""Compile the kernels a workload launches for a GPU architecture, without a GPU.

The CUDA simulator runs kernels as Python and so never types or compiles them: an error the compiler
would report (an untyped global, a non-literal array shape, a float64 slip) passes there. This module
closes that gap in two steps, each in its own process:

1. :func:`recording` (on the simulator) notes, for every kernel launch, the builder that made the kernel
   (see :data:`.runtime.device.BUILDERS`), the builder's arguments and the argument types of the launch;
2. :func:`compile_records` (numba.cuda on its real target, with NVVM installed, e.g. from the
   ``nvidia-nvvm`` and ``nvidia-cuda-nvrtc`` wheels) rebuilds each kernel with the current tunables,
   compiles it to PTX for ``cc`` and, when ``ptxas`` is found, reads its resource report (registers,
   stack frame, spills, shared memory).
"""
import contextlib
import os
import re
import shutil
import subprocess
import tempfile

from ..runtime.compat import cuda_module, simulator_active
from ..runtime.device import BUILDERS

_RESOURCES = {"registers": r"Used (\d+) registers", "stack_bytes": r"(\d+) bytes stack frame",
              "spill_store_bytes": r"(\d+) bytes spill stores", "spill_load_bytes": r"(\d+) bytes spill loads",
              "shared_bytes": r"(\d+) bytes smem"}


def kernels_in(built):
    """The kernels inside what a cached kernel builder returned (a kernel, or a tuple or namespace of them)."""
    if hasattr(built, "overloads"):
        return [built]
    items = built if isinstance(built, tuple) else list(getattr(built, "__dict__", {}).values())
    return [k for item in items for k in kernels_in(item)]


@contextlib.contextmanager
def recording():
    """Record the kernel launches made inside the block (on the simulator).

    Yields
    ------
    list
        Filled on exit with ``(builder name, builder args, kernel name, argument types)``, one per distinct
        launch signature.
    """
    if not simulator_active():
        raise ValueError("recording needs the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    import numba
    from numba.cuda.simulator import kernel as sim_kernel
    seen = {}
    original = sim_kernel.FakeCUDAKernel.__call__

    def call(self, *args):
        if not (self._device or sim_kernel._kernel_context):
            seen.setdefault(id(self), set()).add(tuple(numba.typeof(a) for a in args))
        return original(self, *args)

    records = []
    sim_kernel.FakeCUDAKernel.__call__ = call
    try:
        yield records
    finally:
        sim_kernel.FakeCUDAKernel.__call__ = original
    for name, builder in BUILDERS.items():
        for key, built in builder.cache.items():
            for kern in kernels_in(built):
                records.extend((name, key[0], kern.__name__, types) for types in seen.get(id(kern), ()))


def compile_records(records, cc=(9, 0), ptxas=None):
    """Compile every recorded kernel signature to PTX for compute capability ``cc``.

    Parameters
    ----------
    records : list
        From :func:`recording`.
    cc : tuple of int
    ptxas : str, optional
        Path of ``ptxas`` for the resource report (found on PATH or under CUDA_HOME when omitted).

    Returns
    -------
    list of dict
        ``builder, args, kernel, error`` (None when it compiled) and the ptxas resources when available.
    """
    if simulator_active():
        raise ValueError("compiling needs numba.cuda's real target (unset NUMBA_ENABLE_CUDASIM)")
    cuda = cuda_module()
    _import_every_builder()
    ptxas = ptxas or shutil.which("ptxas") or _toolkit_ptxas()
    results, done = [], set()
    with _target_device(cc):
        for record in records:
            if record not in done:
                done.add(record)
                results.append(_compile_one(cuda, record, cc, ptxas))
    return results


@contextlib.contextmanager
def _target_device(cc):
    """Answer numba-cuda's current-device queries with ``cc`` where no driver is loaded.

    numba-cuda compiles a device function for the current device's compute capability, which needs a
    driver even under ``compile_ptx``; on a machine without one, the device functions a kernel calls are
    compiled for ``cc``, as the kernel itself is.
    """
    import types
    from numba.cuda import compiler, dispatcher
    try:
        dispatcher.get_current_device()
        has_driver = True
    except Exception:  # no driver: the check runs without a GPU
        has_driver = False
    if has_driver:
        yield
        return
    fake = types.SimpleNamespace(compute_capability=tuple(cc))
    originals = dispatcher.get_current_device, compiler.get_current_device
    dispatcher.get_current_device = compiler.get_current_device = lambda: fake
    try:
        yield
    finally:
        dispatcher.get_current_device, compiler.get_current_device = originals


def _compile_one(cuda, record, cc, ptxas):
    """One recorded kernel signature compiled to PTX: its entry of :func:`compile_records`."""
    name, args, kernel, types = record
    kern = next(k for k in kernels_in(BUILDERS[name](*args)) if k.__name__ == kernel)
    entry = {"builder": name.rsplit(".", 1)[-1], "args": repr(args), "kernel": kernel, "error": None}
    try:
        ptx, _ = cuda.compile_ptx(kern.py_func, types, cc=cc)
    except Exception as exc:  # report every kernel that does not compile, not just the first
        entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry
    if ptxas:
        entry.update(_ptxas_resources(ptxas, ptx, cc))
    return entry


def _import_every_builder():
    """Import every module of the cuda backend, so that each kernel builder is registered in BUILDERS."""
    import importlib
    import pkgutil
    from .. import __name__ as package, __path__ as path
    for module in pkgutil.walk_packages(path, package + "."):
        importlib.import_module(module.name)


def _toolkit_ptxas():
    home = os.environ.get("CUDA_HOME")
    path = os.path.join(home, "bin", "ptxas") if home else None
    return path if path and os.path.exists(path) else None


def _ptxas_resources(ptxas, ptx, cc):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        out = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", src, "-o", os.devnull],
                             capture_output=True, text=True, check=False)
    found = {}
    for key, pattern in _RESOURCES.items():
        values = [int(v) for v in re.findall(pattern, out.stderr)]
        if values:
            found[key] = max(values)
    return found
