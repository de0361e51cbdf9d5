"""An adapter module that ends the process while being imported."""
import os

os._exit(5)


def adapter(spec, params, x, V0, dy):
    raise AssertionError("never reached")
