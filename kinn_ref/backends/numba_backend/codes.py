"""Integer codes shared by the compiled kernels (the kernels branch on these at run time, so one
compilation per dtype serves every coupling, integrator and readout)."""

from ..codes import COUPLING_CODES, INTEGRATOR_CODES, READOUT_CODES

# the codes as the module constants the kernels compare against (numba freezes globals at compile time)
NONE, DENSE, KIRCHHOFF, GRID = (COUPLING_CODES[n] for n in ("none", "dense", "kirchhoff", "grid"))
EULER, EXPEULER, IMPLICIT, RK4, TRAPEZOIDAL = (INTEGRATOR_CODES[n] for n in
                                               ("euler", "expeuler", "implicit", "rk4", "trapezoidal"))
LAST, CELLS, DERIVATIVES = (READOUT_CODES[n] for n in ("last", "cells", "derivatives"))

# rows of the per-group accumulator of per-node sums, shape (n_groups, N_NODE_SUMS, K, N), float64: the regrouped
# sums of docs/math.md section 9 (eq. 38), chained into circuit gradients once per pass by gradients.py
SUM_C = 0        # d/dC                    (reference: acc.C)
SUM_G = 1        # d/dg                    (acc.g)
SUM_LEAK = 2     # d/dleak                 (acc.leak)
SUM_BETA = 3     # d/dbeta                 (acc.beta)
SUM_PASS1 = 4    # expeuler dE, implicit and trapezoidal dh (the integrator's per-pass terms)
SUM_PASS2 = 5    # expeuler dp, implicit and trapezoidal dc
SUM_ZV = 6       # sum z*V of the contributions that differentiate the full coupling A (not only O)
SUM_GRID_OFF = 7  # grid: sum z * (off-diagonal unit Laplacian applied to V), per node
N_NODE_SUMS = 8

# rows of the per-group accumulator of coupling matrices, shape (n_groups, N_MATRIX_SUMS, K, N, N), float64
MAT_ZV = 0       # dense/kirchhoff: sum z^T V
MAT_EXP = 1      # dense/kirchhoff expeuler: sum dV_next^T V
N_MATRIX_SUMS = 2

# planes of the packed constant arrays of KernelConstants (fewer, larger arrays keep compilation short)
NODE_C, NODE_G, NODE_LEAK, NODE_BETA, NODE_E, NODE_P, NODE_H, NODE_CI, NODE_S = range(9)   # node (9, K, N)
N_NODE_PLANES = 9
COUP_A, COUP_A_T, COUP_O, COUP_O_T = range(4)          # coupling (4, K, N, N)
TRI_DL, TRI_D, TRI_DU, TRI_DU2, TRI_W = range(5)       # tri (5, K, P0, P1, H)
