"""Counting copies between host and device, to show that a device-resident training step makes none.

:func:`count_transfers` patches numba.cuda's copy entry points (explicit copies, and the implicit copy of
a NumPy array passed to a kernel) for the duration of a ``with`` block, on a real GPU and on the simulator.
"""
import contextlib
from dataclasses import dataclass, field

from ..runtime.compat import cuda_module, simulator_active


@dataclass
class TransferCount:
    """Copies seen inside :func:`count_transfers`, by direction.

    Attributes
    ----------
    to_device, to_host : int
    events : list of str
        Name of the entry point of every copy, in order.
    """

    to_device: int = 0
    to_host: int = 0
    events: list = field(default_factory=list)

    @property
    def total(self):
        return self.to_device + self.to_host


def _entry_points():
    """(owner, attribute, direction) of every copy entry point of the active numba.cuda."""
    cuda_module()
    if simulator_active():
        from numba.cuda.simulator import kernel as sim_kernel
        from numba.cuda.simulator.cudadrv import devicearray as sim_array
        return [(sim_array.FakeCUDAArray, "copy_to_host", "to_host"),
                (sim_array.FakeCUDAArray, "copy_to_device", "to_device"),
                (sim_array, "to_device", "to_device"),
                (sim_kernel, "InOut", "to_device")]
    from numba.cuda.cudadrv import devicearray
    return [(devicearray.DeviceNDArray, "copy_to_host", "to_host"),
            (devicearray.DeviceNDArray, "copy_to_device", "to_device"),
            (devicearray, "auto_device", "to_device")]


@contextlib.contextmanager
def count_transfers():
    """Count host/device copies made inside the block.

    Yields
    ------
    TransferCount
    """
    count = TransferCount()
    patched = []

    def wrap(owner, name, direction):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            setattr(count, direction, getattr(count, direction) + 1)
            count.events.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return original(*args, **kwargs)

        setattr(owner, name, counted)
        patched.append((owner, name, original))

    try:
        for owner, name, direction in _entry_points():
            wrap(owner, name, direction)
        yield count
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
