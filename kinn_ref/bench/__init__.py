"""Benchmarks of the backends (``kinn-ref bench``): configurations, the timing harness and an optional
PyTorch port used as a comparison point. Nothing here is imported by ``import kinn_ref``."""
