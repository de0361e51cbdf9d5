"""The one tolerance policy of kinn_ref: how close a backend's results must be to the reference (docs/math.md,
SPEC section 3), and the one measure of closeness.

Every comparison uses them: the test suite (``tests/helpers.py``), the golden suite's floors
(:mod:`kinn_ref.analysis.golden_store`; a case's own tolerance follows its condition and is never below these)
and the benchmarks' agreement columns.
"""
import numpy as np

#: Norm-wise relative error bounds by computation dtype, for CPU backends and for GPU backends.
TOLERANCES = {"float64": {"cpu": 1e-12, "gpu": 1e-11}, "float32": {"cpu": 1e-5, "gpu": 1e-5}}


def tolerance(dtype, device="cpu"):
    """The bound of :data:`TOLERANCES` for ``dtype`` (float32 or float64) on ``device`` ("cpu" or "gpu")."""
    name = np.dtype(dtype).name
    if name not in TOLERANCES or device not in ("cpu", "gpu"):
        raise ValueError(f"no tolerance for dtype {name!r} on device {device!r}: dtype must be float32 or float64, "
                         "device 'cpu' or 'gpu'")
    return TOLERANCES[name][device]


def relative_error(actual, expected):
    """``||actual - expected|| / ||expected||`` (``||actual||`` when ``expected`` is all zeros), in float64."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shape {actual.shape} differs from the expected {expected.shape}")
    scale = np.linalg.norm(expected)
    diff = np.linalg.norm(actual - expected)
    return float(diff / scale) if scale > 0 else float(diff)
