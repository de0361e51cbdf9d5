"""An adapter module that fails while being imported."""
raise RuntimeError("this module cannot be imported")


def adapter(spec, params, x, V0, dy):
    raise AssertionError("never reached")
