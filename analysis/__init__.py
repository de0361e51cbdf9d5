"""SymPy stability and higher-order analysis of KINN layers, and the golden-reference suite.

This package imports :mod:`kinn_ref`; :mod:`kinn_ref` never imports it (the ``kinn-ref stability`` and
``kinn-ref golden`` commands reach it lazily). SymPy, mpmath and matplotlib are imported inside functions.

Modules, by task:

- the formulation again, in exact or high-precision arithmetic: :mod:`~analysis.discrete_map`;
- stability (docs/stability.md): :mod:`~analysis.stability_functions` (``R(z)`` derived from KCL, closed
  forms), :mod:`~analysis.stability` (``dt_max`` per integrator and cell, spectral radius),
  :mod:`~analysis.symbolic_layer` (exact amplification matrices of tiny layers),
  :mod:`~analysis.stability_report` (report and maps), :mod:`~analysis.plots`,
  :mod:`~analysis.validation` (backends below and above ``dt_max``);
- higher order: :mod:`~analysis.higher_order` (transfer function, ODE, responses, exact derivatives,
  measured orders), :mod:`~analysis.symbolic_gradients` (SymPy oracle for the backward pass);
- golden suite (docs/golden.md): :mod:`~analysis.golden_cases` (catalogue of the basic tier, seeds, inputs),
  :mod:`~analysis.golden_tiers` (the stiff, long, edge and float32 tiers), :mod:`~analysis.golden_tolerance`
  (condition and tolerance of a case), :mod:`~analysis.golden_generate` (50-digit values, complex-step gradients), :mod:`~analysis.golden_store`
  (files, manifest, hashes), :mod:`~analysis.golden_export`, :mod:`~analysis.golden_check` (backends and
  outside implementations through the adapter), :mod:`~analysis.golden_adapter` (the adapter protocol),
  :mod:`~analysis.golden_worker` (an adapter in its own process, with a timeout),
  :mod:`~analysis.golden_report` (JSON and JUnit XML), :mod:`~analysis.golden_pytest` (the pytest plugin).
"""
