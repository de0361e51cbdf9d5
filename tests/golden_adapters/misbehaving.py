"""Adapters that misbehave on one case (``BAD``) and run the NumPy reference on the others; the checker must
report that case alone and go on (tests/test_golden_adapters.py)."""
import os
import sys
import time

import numpy as np

import kinn_ref as kr
from kinn_ref.analysis.golden_cases import spec_from_dict

BAD = "none-expeuler-cells-raw-K3-static-seq"


def reference(spec, params, x, V0, dy):
    s = spec_from_dict(spec)
    y, tape = kr.forward(s, params, x, V0)
    return y, kr.backward(s, params, tape, dy)


def _on_bad(misbehave):
    def adapter(spec, params, x, V0, dy, case):
        y, grads = reference(spec, params, x, V0, dy)
        return misbehave(y, grads) if case.name == BAD else (y, grads)
    return adapter


complex_y = _on_bad(lambda y, g: (y + 1000j, g))
complex_grad = _on_bad(lambda y, g: (y, dict(g, W=g["W"].astype(complex))))
nan_y = _on_bad(lambda y, g: (np.where(np.arange(y.size).reshape(y.shape) == 1, np.nan, y), g))
inf_grad = _on_bad(lambda y, g: (y, dict(g, leak=np.full_like(g["leak"], np.inf))))
y_only = _on_bad(lambda y, g: y)
three_items = _on_bad(lambda y, g: (y, g, None))
grads_a_list = _on_bad(lambda y, g: (y, list(g.values())))
y_none = _on_bad(lambda y, g: (None, g))
y_wrong_shape = _on_bad(lambda y, g: (y[:, :1], g))
y_a_string = _on_bad(lambda y, g: ("y", g))


def _hang(y, g):
    time.sleep(600)


def _exit(y, g):
    sys.exit(3)


def _hard_exit(y, g):
    os._exit(7)


hangs = _on_bad(_hang)
exits = _on_bad(_exit)
exits_hard = _on_bad(_hard_exit)


def prints(spec, params, x, V0, dy):
    print("a line from the adapter")
    return reference(spec, params, x, V0, dy)


def unsupported(spec, params, x, V0, dy):
    raise NotImplementedError("nothing here")


def forward_only(spec, params, x, V0, dy):
    return reference(spec, params, x, V0, dy)[0], None
