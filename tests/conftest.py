import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# The cuda backend's tests run on numba's CUDA simulator unless a real GPU is asked for
# (KINN_REF_REAL_CUDA=1). The variable must be set before numba is imported; it only affects numba.cuda.
if os.environ.get("KINN_REF_REAL_CUDA") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
