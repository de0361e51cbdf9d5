"""Training data on the device, and mini-batches gathered from it by a device index array.

The data are uploaded once per training run and the batch order once per epoch; a step's batch is then
gathered on the device (twin of NumPy's ``x[order[start:stop]]``), so a step copies no input.
"""
import numpy as np

from ...launch_warnings import quiet_launches
from ..backend import upload
from ..runtime.compat import cuda_module
from ..runtime.device import empty, kernel_cache, launch_1d

cuda = cuda_module()


@kernel_cache
def _gather_kernel(dtype):
    @cuda.jit
    def gather(src, index, start, out):
        """``out[r] = src[index[start + r]]`` for rows of ``src`` (n, width) and ``out`` (rows, width)."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        rows, width = out.shape
        while i < rows * width:
            r = i // width
            out[r, i - r * width] = src[index[start + r], i - r * width]
            i += stride

    return gather


def to_device(a):
    """``a`` on the device (one copy), with canonical strides."""
    return upload(np.asarray(a))


@quiet_launches
def gather_rows(src, index, start, stop):
    """Rows ``index[start:stop]`` of the device array ``src`` as a new device array (twin of
    ``src[index[start:stop]]``).

    Parameters
    ----------
    src : device array (n, ...)
    index : device array of int (m,)
    start, stop : int

    Returns
    -------
    device array (stop - start, ...)
    """
    n = src.shape[0]
    width = src.size // n if n else 0
    out = empty((stop - start,) + tuple(src.shape[1:]), src.dtype)
    if out.size:
        launch_1d(_gather_kernel(src.dtype.str), out.size, src.reshape(n, width), index, start,
                  out.reshape(stop - start, width))
    return out
