"""The per-node math library every kernel family calls: each integrator's update of one node and its adjoint,
the right-hand side F (eq. 1) and its adjoint, the readouts, as device functions named for their reference
twins.

- :mod:`.updates`: scalar functions of one cell of one node, shared by the cell, step and persistent
  families (the update of eqs. 12-13, 15 and 36, the node current of eq. 1 and their adjoints).
- :mod:`.cascade`: one node's ``K`` cells in registers, built on :mod:`.updates` (the cell family).
- :mod:`.stencil`: the grid coupling term (eq. 7) evaluated inside a kernel.
- :mod:`.scalars`: softplus and phi1 per dtype (eqs. 8, 14).
- :mod:`.slots`: the layout of the per-node gradient sums (the regrouped sums of docs/math.md) and their
  block-ordered reduction.
"""
