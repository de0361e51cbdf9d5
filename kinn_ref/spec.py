"""The immutable, validated description of one KINN layer (docs/math.md, section 1)."""
from dataclasses import dataclass
from difflib import get_close_matches
from math import prod

from ._checks import check_choice, check_positive_float, check_positive_int, check_step

COUPLINGS = ("none", "dense", "kirchhoff", "grid")
INTEGRATORS = ("euler", "expeuler", "implicit", "rk4", "trapezoidal")
READOUTS = ("last", "cells", "derivatives")
PARAMETERIZATIONS = ("positive", "raw")
BOUNDARIES = ("periodic", "neumann", "dirichlet")


@dataclass(frozen=True)
class LayerSpec:
    """Description of one KINN layer.

    Parameters
    ----------
    in_features : int
        Input features ``D`` per node (per grid point for ``coupling="grid"``).
    n_nodes : int
        Nodes ``N`` per cell; for ``coupling="grid"`` the channel count ``H`` per grid point
        (the cell then has ``N = P * H`` nodes, see :attr:`total_nodes`).
    order : int
        Cells ``K`` in the cascade.
    coupling : {"none", "dense", "kirchhoff", "grid"}
        Coupling ``A_k`` between the nodes of a cell (math.md eq. 4-7).
    integrator : {"euler", "expeuler", "implicit", "rk4", "trapezoidal"}
        One-step method (math.md section 4).
    dt : float
        Step size: finite, > 0 and a normal float64 (at least ``numpy.finfo(numpy.float64).tiny``).
    n_steps : int
        Steps for static input; sequence input takes its length ``T`` instead.
    readout : {"last", "cells", "derivatives"}
        What the layer returns (math.md section 5).
    param : {"positive", "raw"}
        Parameterization (math.md section 3).
    c_min : float
        Lower bound of the capacitance in ``positive`` mode.
    return_sequences : bool
        Return the readout after every step, shape ``(B, T, ...)``.
    grid_shape : tuple of int, optional
        Points per axis of the 1-D or 2-D grid; required for ``coupling="grid"`` only.
    boundary : {"periodic", "neumann", "dirichlet"}
        Grid boundary condition.

    Raises
    ------
    TypeError
        For an option that is not one of the fields above (the message lists the valid ones).
    ValueError
        For a field out of its range, naming the field.
    """

    in_features: int
    n_nodes: int
    order: int = 1
    coupling: str = "none"
    integrator: str = "expeuler"
    dt: float = 0.1
    n_steps: int = 10
    readout: str = "last"
    param: str = "positive"
    c_min: float = 1e-3
    return_sequences: bool = False
    grid_shape: tuple = None
    boundary: str = "periodic"

    def __new__(cls, *args, **options):
        # runs before the generated __init__, whose own message for an unknown keyword names neither the
        # valid options nor the closest one
        fields = list(cls.__dataclass_fields__)
        unknown = [name for name in options if name not in fields]
        if unknown:
            close = {name: get_close_matches(name, fields, n=1) for name in unknown}
            hints = "".join(f" ({name!r}: did you mean {m[0]!r}?)" for name, m in close.items() if m)
            raise TypeError(f"LayerSpec got unknown option{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(map(repr, unknown))}{hints}; the options are {', '.join(fields)}")
        if len(args) > len(fields):
            raise TypeError(f"LayerSpec takes at most {len(fields)} positional arguments ({', '.join(fields)}), "
                            f"got {len(args)}")
        return super().__new__(cls)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "in_features", check_positive_int("in_features", self.in_features))
        set_(self, "n_nodes", check_positive_int("n_nodes", self.n_nodes))
        set_(self, "order", check_positive_int("order", self.order))
        check_choice("coupling", self.coupling, COUPLINGS)
        check_choice("integrator", self.integrator, INTEGRATORS)
        set_(self, "dt", check_step("dt", self.dt))
        set_(self, "n_steps", check_positive_int("n_steps", self.n_steps))
        check_choice("readout", self.readout, READOUTS)
        check_choice("param", self.param, PARAMETERIZATIONS)
        set_(self, "c_min", check_positive_float("c_min", self.c_min) if self.param == "positive"
             else float(self.c_min))
        if not isinstance(self.return_sequences, bool):
            raise ValueError(f"return_sequences must be a bool, got {self.return_sequences!r}")
        check_choice("boundary", self.boundary, BOUNDARIES)
        if self.coupling == "grid":
            if self.grid_shape is None:
                raise ValueError("grid_shape must be given for coupling='grid', e.g. (64,) or (16, 16)")
            shape = tuple(self.grid_shape) if isinstance(self.grid_shape, (tuple, list)) else (self.grid_shape,)
            if len(shape) not in (1, 2):
                raise ValueError(f"grid_shape must have 1 or 2 axes, got {self.grid_shape!r}")
            set_(self, "grid_shape", tuple(check_positive_int("grid_shape", s, minimum=1) for s in shape))
        elif self.grid_shape is not None:
            raise ValueError(f"grid_shape is only used with coupling='grid', got {self.grid_shape!r} "
                             f"with coupling={self.coupling!r}")

    @property
    def n_points(self):
        """Grid points ``P`` (1 for couplings other than ``grid``)."""
        return prod(self.grid_shape) if self.coupling == "grid" else 1

    @property
    def total_nodes(self):
        """Nodes per cell ``N`` (``P * H`` for a grid)."""
        return self.n_points * self.n_nodes

    @property
    def readout_width(self):
        """Width of one readout: ``N``, ``K*N`` or ``(K+1)*N``."""
        return {"last": 1, "cells": self.order, "derivatives": self.order + 1}[self.readout] * self.total_nodes

    def param_shapes(self):
        """Shapes of the parameter arrays, keyed by the names of docs/math.md section 1."""
        K, H, D = self.order, self.n_nodes, self.in_features
        shapes = {"W": (H, D), "b": (H,), "C_raw": (K, H), "g_raw": (K, H), "leak": (K, H), "beta": (K, H)}
        if self.coupling in ("dense", "kirchhoff"):
            shapes["G_raw"] = (K, H, H)
        elif self.coupling == "grid":
            shapes["G_raw"] = (K, H)
        return shapes

    def input_shape(self, batch=None, steps=None):
        """Expected shape of ``x``: static when ``steps`` is None, otherwise a sequence."""
        feature = (self.n_points, self.in_features) if self.coupling == "grid" else (self.in_features,)
        return (batch,) + (() if steps is None else (steps,)) + feature

    def summary(self):
        """One line naming the layer: sizes, coupling, integrator, step and readout (for reprs and logs).

        Fields at their defaults (``param="positive"``, ``return_sequences=False``) are left out; a grid
        adds its shape and boundary.

        Returns
        -------
        str
            E.g. ``"in=3 nodes=8 order=2 kirchhoff expeuler dt=0.1 n_steps=20 readout=derivatives"``, or
            ``"in=1 nodes=4 order=1 grid=16x16 periodic euler ..."`` (``nodes`` counts channels per point).
        """
        parts = [f"in={self.in_features}", f"nodes={self.n_nodes}", f"order={self.order}"]
        parts.append(f"grid={'x'.join(map(str, self.grid_shape))} {self.boundary}" if self.coupling == "grid"
                     else self.coupling)
        parts += [self.integrator, f"dt={self.dt:g}", f"n_steps={self.n_steps}", f"readout={self.readout}"]
        if self.param != "positive":
            parts.append(f"param={self.param}")
        if self.return_sequences:
            parts.append("return_sequences")
        return " ".join(parts)

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (validated again)."""
        from dataclasses import replace
        return replace(self, **changes)


def check_spec(spec, name="spec"):
    """Return ``spec`` if it is a :class:`LayerSpec`; raise ValueError naming ``name`` otherwise."""
    if not isinstance(spec, LayerSpec):
        hint = f"; build one with LayerSpec(**{name})" if isinstance(spec, dict) else ""
        raise ValueError(f"{name} must be a kinn_ref.LayerSpec, got {type(spec).__name__}{hint}")
    return spec
