import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# The cuda backend's tests run on numba's CUDA simulator unless a real GPU is asked for
# (KINN_REF_REAL_CUDA=1). The variable must be set before numba is imported; it only affects numba.cuda.
if os.environ.get("KINN_REF_REAL_CUDA") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

# The simulator runs each CUDA thread as a Python thread and its launcher polls them, so a kernel's
# time is mostly GIL hand-overs. A short switch interval makes them 4-6x faster: two device-training
# tests took 19.4 s at Python's default 5 ms, 5.1 s at 0.5 ms and 3.3 s at 0.05 ms (2-core machine).
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    sys.setswitchinterval(5e-5)
    from cudasim_shared import make_shared_arrays_thread_safe

    make_shared_arrays_thread_safe()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
