"""The CPU benchmark configurations (docs/benchmarks.md): forward + backward of one layer."""
from dataclasses import dataclass

import numpy as np

from ..spec import LayerSpec


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark case: a layer, a batch and a dtype, with models of its work.

    Attributes
    ----------
    name : str
    spec : LayerSpec
    batch : int
    dtype : numpy.dtype
    """

    name: str
    spec: LayerSpec
    batch: int
    dtype: np.dtype

    @property
    def label(self):
        return f"{self.name}/{np.dtype(self.dtype).name}"

    def flops(self):
        """Floating-point operations of one forward + backward, counted for the numba kernels.

        Dense/kirchhoff: the three ``B x N x N`` matrix products per step and cell (forward coupling,
        adjoint coupling, coupling gradient); other couplings: per node and step, 8 operations forward
        and 16 backward for exponential Euler, plus 10 (stencil) and 8 (tridiagonal solve) per
        direction for implicit grids.
        """
        s, B = self.spec, self.batch
        steps, K, N = s.n_steps, s.order, s.total_nodes
        if s.coupling in ("dense", "kirchhoff"):
            return 3 * steps * K * 2 * B * N * N
        per_node = 24 if s.integrator == "expeuler" else 0
        if s.coupling == "grid" and s.integrator == "implicit":
            per_node += 2 * (10 + 8) + 12
        return steps * K * B * N * per_node

    def bytes_moved(self):
        """Minimum memory traffic of one forward + backward: every stored state written once and read
        once, the input currents read in both passes, their gradient written."""
        s, B = self.spec, self.batch
        item = np.dtype(self.dtype).itemsize
        states = (s.n_steps + 1) * B * s.order * s.total_nodes
        currents = B * s.total_nodes
        return item * (2 * states + 3 * currents)


def cpu_configs(dtypes=("float32", "float64")):
    """``cell``, ``dense`` and ``grid`` in each dtype (the sizes of docs/benchmarks.md)."""
    specs = {
        "cell": (LayerSpec(32, 256, order=2, coupling="none", integrator="expeuler", n_steps=32), 4096),
        "dense": (LayerSpec(32, 256, order=1, coupling="dense", integrator="expeuler", n_steps=16), 1024),
        "grid": (LayerSpec(4, 32, order=1, coupling="grid", grid_shape=(1024,), boundary="periodic",
                           integrator="implicit", n_steps=16), 64),
    }
    return [BenchConfig(name, spec, batch, np.dtype(dt)) for dt in dtypes for name, (spec, batch) in specs.items()]
