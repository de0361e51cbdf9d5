"""The coupled layers (dense, kirchhoff, grid) one step at a time: the reference's loops on the device.

Each step is a few launches: the coupling product over the batch (dense, kirchhoff; the grid's stencil runs
inside the step kernel), then one node-parallel kernel that updates every cell (:mod:`.families.step_kernels`).
Implicit and trapezoidal steps solve per cell with the inverse computed once per pass (dense, kirchhoff) or the
grid's eigenbasis (:mod:`..coupling_grid`); rk4 runs four right-hand-side launches. The backward pass walks
the kept states backwards (recomputing a segment's states from its checkpoint when ``checkpoint_every`` is
given) and runs the adjoint launches of each step.
"""
from types import SimpleNamespace

import numpy as np

from ....integrators import INTEGRATORS
from ...codes import READOUT_CODES
from ..linalg import gemm as mm
from ..linalg.inverse import invert
from ..linalg.projection import project
from ..node_math.cascade import RK4_NODES, RK4_WEIGHTS
from ..node_math.slots import N_SLOTS
from ..node_math.stencil import geometry
from ..runtime.device import axpby, copy, empty, fill, flat, node_grid, scalar, zeros
from .spans import n_stores, store_index
from .step_kernels import step_kernels

READOUTS = READOUT_CODES
#: The integrators that solve one linear system per cell and step (eqs. 15 and 36).
SOLVED = tuple(name for name, method in INTEGRATORS.items() if method.capacitance_scale)


def default_interval(T):
    """The coupled families keep every state by default."""
    return 1


class _Run:
    """Launch helpers shared by the forward and backward passes of one layer."""

    def __init__(self, spec, circuit, consts, coupling, currents, B):
        self.spec, self.circuit, self.consts, self.coupling = spec, circuit, consts, coupling
        self.I = currents
        self.dtype = circuit.C.dtype
        self.B, self.K, self.N = B, spec.order, spec.total_nodes
        self.grid = spec.coupling == "grid"
        self.kern = step_kernels(self.dtype.str, self.K, self.grid)
        self.launch = node_grid(self.N, B)
        self.geo = geometry(spec)
        self.s = coupling.s if self.grid else empty((1, 1), self.dtype)
        self.dummy3 = empty((1, 1, 1), self.dtype)
        self.dt = spec.dt
        self._pool = {}

    def new(self):
        return empty((self.B, self.K, self.N), self.dtype)

    def buf(self, name):
        """A (B, K, N) work array reused under ``name`` for the whole pass (no allocation per step)."""
        if name not in self._pool:
            self._pool[name] = self.new()
        return self._pool[name]

    def other(self, a, names):
        """The buffer of ``names`` (a pair) that is not ``a``."""
        return self.buf(names[1]) if a is self._pool.get(names[0]) else self.buf(names[0])

    def f(self, v):
        return scalar(self.dtype, v)

    def product(self, X, mode):
        """The coupling term ``X A^T`` (dense, kirchhoff), or a placeholder (grid: the kernels compute it)."""
        if self.grid:
            return self.dummy3
        out = self.buf("P")
        self.coupling.product(X, self.coupling.matrix(mode), out)
        return out

    def rhs(self, S, out, t, affine=True, Y=None, y0c=0.0, ac=1.0, cc=0.0, acc_in=None, acc_out=None, mc=0.0,
            wc=0.0):
        c = self.circuit
        self.kern.rhs[self.launch](S, Y if Y is not None else self.dummy3, self.product(S, "full"), self.I, t,
                                   acc_in if acc_in is not None else self.dummy3,
                                   acc_out if acc_out is not None else self.dummy3, out, self.f(y0c), self.f(ac),
                                   self.f(cc), self.f(mc), self.f(wc), acc_out is not None, affine, c.C, c.g,
                                   c.leak, c.beta, self.s, self.geo)

    def rhs_vjp(self, S, dF, t, dI, partial, alpha=1.0, affine=True, base=None, base_c=0.0, out=None, nxt=None,
                next_a=0.0, next_b=0.0, dYp=None):
        """Adjoint of :meth:`rhs` at ``S`` for ``alpha dF``; returns ``out`` (``base_c base + g``)."""
        c, cp = self.circuit, self.coupling
        out = self.new() if out is None else out
        Cinv = cp.c_inverse()
        if self.grid:
            Q = self.dummy3
        else:
            Q = self.new()
            cp.product(dF, cp.scaled("MC", Cinv, "full"), Q, alpha=alpha, transpose=False)
            cp.accumulate("rhs", dF, S, alpha=alpha)
        self.kern.rhs_vjp[self.launch](S, dF, self.f(alpha), Q, self.I, t, base if base is not None else self.dummy3,
                                       self.f(base_c), out, nxt if nxt is not None else self.dummy3,
                                       self.f(next_a), self.f(next_b), nxt is not None,
                                       dYp if dYp is not None else self.dummy3, affine, c.C, Cinv, c.g, c.leak,
                                       c.beta, self.s, self.geo, dI, partial)
        return out

    # ---- one step (forward)
    def step(self, Y, out, n, t, flag):
        c, k_ = self.consts, self.kern
        integ = self.spec.integrator
        if integ in ("euler", "expeuler"):
            mode = "full" if integ == "euler" else "off"
            k_.linear_fwd[self.launch](Y, out, self.product(Y, mode), self.I, t, c.c1, c.c2, self.circuit.leak,
                                       self.circuit.beta, self.s, self.geo, integ == "euler", flag, n)
        elif integ in SOLVED:
            R = self.buf("R")
            trap = integ == "trapezoidal"
            P = self.product(Y, "full") if trap else self.dummy3
            right_side = k_.trapezoidal_rhs if trap else k_.implicit_rhs
            for k in range(self.K):
                right_side[self.launch](Y, out, k, self.I, t, c.c1, self.circuit.leak, self.circuit.beta, R, P,
                                        self.circuit.g, self.s, self.geo)
                self.solve(R, out, k, transpose=True)
            k_.check[self.launch](out, flag, n)
        else:
            self.rk4(Y, out, t)
            k_.check[self.launch](out, flag, n)

    def solve(self, src, dst, k, transpose):
        """Cell ``k`` of ``dst`` = cell ``k`` of ``src`` times ``M_k^{-T}`` (``transpose``) or ``M_k^{-1}``."""
        if self.grid:
            K, N = self.K, self.N
            self.coupling.solve(self.c_total(), k, flat(src), k * N, K * N, flat(dst), k * N, K * N, self.B)
        else:
            self.coupling.product(src, self.inverse(), dst, transpose=transpose, k=k)

    def c_total(self):
        """``h + g`` (K, N), ``h = s C/dt`` (``c1`` of a solved step)."""
        if not hasattr(self, "_c"):
            self._c = axpby(1.0, self.consts.c1, 1.0, self.circuit.g)
        return self._c

    def inverse(self):
        """``(diag(h + g) - A_k)^{-1}`` per cell, once per pass."""
        if not hasattr(self.consts, "Minv"):
            self.consts.Minv = invert(self.c_total(), self.coupling.matrix("full"))
        return self.consts.Minv

    def stages(self, Y, t):
        """rk4 stage states ``Y_2, Y_3, Y_4`` (eq. 16)."""
        out, S = [], Y
        for i in range(3):
            nxt = self.new()
            self.rhs(S, nxt, t, Y=Y, y0c=1.0, ac=self.dt * RK4_NODES[i + 1])
            out.append(nxt)
            S = nxt
        return out

    def rk4(self, Y, out, t):
        acc = self.buf("rk4_acc")
        S, bufs = Y, (self.buf("rk4_stage0"), self.buf("rk4_stage1"))
        for i in range(4):
            if i < 3:
                nxt = bufs[i % 2]
                self.rhs(S, nxt, t, Y=Y, y0c=1.0, ac=self.dt * RK4_NODES[i + 1], acc_in=acc, acc_out=acc,
                         mc=0.0 if i == 0 else 1.0, wc=RK4_WEIGHTS[i])
                S = nxt
            else:
                self.rhs(S, out, t, Y=Y, y0c=1.0, ac=0.0, cc=self.dt, acc_in=acc, acc_out=acc, mc=1.0,
                         wc=RK4_WEIGHTS[i])

    def readout(self, Yn, y, t_out, t_in):
        code = READOUTS[self.spec.readout]
        self.kern.readout_write[self.launch](Yn, y, t_out, code, 0)
        if code == 2:
            Z = Yn
            for m in range(1, self.K + 1):
                Zm = self.new()
                self.rhs(Z, Zm, t_in, affine=m == 1)
                self.kern.readout_write[self.launch](Zm, y, t_out, 2, m)
                Z = Zm

    # ---- adjoints
    def readout_vjp(self, Yn, dY, dy, t_out, t_in, dI, partial):
        code = READOUTS[self.spec.readout]
        add = self.kern.readout_add[self.launch]
        if code < 2:
            add(dY, dy, t_out, code, 0)
            return
        K = self.K
        Z = [self.new()]
        self.rhs(Yn, Z[0], t_in)
        for m in range(1, K - 1):
            Z.append(self.new())
            self.rhs(Z[m - 1], Z[m], t_in, affine=False)
        dZ = zeros((self.B, K, self.N), self.dtype)
        for m in reversed(range(1, K)):
            add(dZ, dy, t_out, 2, m + 1)
            dZ = self.rhs_vjp(Z[m - 1], dZ, t_in, dI, partial, affine=False)
        add(dZ, dy, t_out, 2, 1)
        self.rhs_vjp(Yn, dZ, t_in, dI, partial, base=dY, base_c=1.0, out=dY)
        add(dY, dy, t_out, 2, 0)

    def step_vjp(self, Yo, Yn, dY, t, dI, partial):
        """Cotangent of ``Yo`` from the cotangent ``dY`` of ``Yn`` (a new array)."""
        c, cp = self.consts, self.coupling
        integ = self.spec.integrator
        out = self.other(dY, ("dY0", "dY1"))
        if integ in ("euler", "expeuler"):
            mode = "full" if integ == "euler" else "off"
            if self.grid:
                Q = self.dummy3
            else:
                Q = self.buf("Q")
                cp.product(dY, cp.scaled("Mp", c.c2, mode), Q, transpose=False)
                cp.accumulate("int", dY, Yo)
            self.kern.linear_bwd[self.launch](Yo, dY, out, Q, self.I, t, c.c1, c.c2, self.circuit.beta, self.s,
                                              self.geo, integ == "euler", dI, partial)
        elif integ in SOLVED:
            trap = integ == "trapezoidal"
            dY1, lam = copy(dY, self.buf("dY_copy")), self.buf("lam")
            step_adjoint = self.kern.trapezoidal_bwd if trap else self.kern.implicit_bwd
            for k in reversed(range(self.K)):
                self.solve(dY1, lam, k, transpose=False)
                if not self.grid:
                    cp.accumulate("int", lam, Yn, k=k)
                    if trap:
                        cp.accumulate("int", lam, Yo, k=k)
                step_adjoint[self.launch](k, lam, Yo, Yn, out, dY1, t, c.c1, self.circuit.beta, self.geo, dI,
                                          partial, self.circuit.g, self.s)
            if trap and not self.grid:
                cp.product(lam, cp.matrix("full"), out, transpose=False, beta=1.0)
        else:
            S2, S3, S4 = self.stages(Yo, t)
            dt = self.dt
            D1, D2 = self.new(), self.new()
            w, cn = RK4_WEIGHTS, RK4_NODES
            self.rhs_vjp(S4, dY, t, dI, partial, alpha=dt * w[3], base=dY, base_c=1.0, out=out, nxt=D1,
                         next_a=dt * w[2], next_b=dt * cn[3], dYp=dY)
            self.rhs_vjp(S3, D1, t, dI, partial, base=out, base_c=1.0, out=out, nxt=D2, next_a=dt * w[1],
                         next_b=dt * cn[2], dYp=dY)
            self.rhs_vjp(S2, D2, t, dI, partial, base=out, base_c=1.0, out=out, nxt=D1, next_a=dt * w[0],
                         next_b=dt * cn[1], dYp=dY)
            self.rhs_vjp(Yo, D1, t, dI, partial, base=out, base_c=1.0, out=out)
        return out


def _currents(spec, dp, x, sequence, T):
    B = x.shape[0]
    Tin = T if sequence else 1
    rows = x.size // spec.in_features
    return project(x.reshape(rows, spec.in_features), dp["W"], dp["b"]).reshape(B, Tin, spec.total_nodes)


def forward(spec, dp, circuit, consts, coupling, x, V0, T, sequence, every, flag, explicit_interval=False):
    """All ``T`` steps, keeping every ``every``-th state whether or not it was asked for (``explicit_interval``);
    returns ``(y (B, T or 1, W), states, aux)``."""
    dtype = dp["W"].dtype
    B, K, N = x.shape[0], spec.order, spec.total_nodes
    I = _currents(spec, dp, x, sequence, T)
    run = _Run(spec, circuit, consts, coupling, I, B)
    y = empty((B, T if spec.return_sequences else 1, spec.readout_width), dtype)
    store = empty((n_stores(0, T, every), B, K, N), dtype)
    states = {0: V0}
    Y = V0 if V0 is not None else zeros((B, K, N), dtype)
    scratch = (run.new(), run.new())
    for n in range(T):
        r = n + 1
        due = r % every == 0 or r == T
        out = store[store_index(r, 0, every)] if due else scratch[n % 2]
        t = n if sequence else 0
        run.step(Y, out, n, t, flag)
        if due:
            states[r] = out
        if spec.return_sequences or r == T:
            run.readout(out, y, n if spec.return_sequences else 0, t)
        Y = out
    return y, states, SimpleNamespace(currents=I)


def backward(spec, tape, dy3):
    """Adjoint of :func:`forward`: ``(sums (K, N_SLOTS, N), dI (B, Tin, N), dV0 or None)``."""
    dtype = tape.params["W"].dtype
    x = tape.x
    B, K, N, T = x.shape[0], spec.order, spec.total_nodes, tape.n_steps
    run = _Run(spec, tape.circuit, tape.consts, tape.coupling, tape.aux.currents, B)
    Tin = T if tape.sequence else 1
    dI = zeros((B, Tin, N), dtype)
    partial = zeros((run.launch[0][1], K, N_SLOTS, N), dtype)
    dY = fill(run.buf("dY0"), 0.0)
    marks = sorted(tape.states)
    zero_state = None
    sink = empty((1,), np.int32)
    for i in reversed(range(len(marks) - 1)):
        n0, n1 = marks[i], marks[i + 1]
        start = tape.states[n0]
        if start is None:
            zero_state = zero_state if zero_state is not None else zeros((B, K, N), dtype)
            start = zero_state
        Ys = [start]
        for n in range(n0, n1):  # recompute the segment's states from its checkpoint
            if n + 1 in tape.states:
                Ys.append(tape.states[n + 1])
            else:
                nxt = run.new()
                run.step(Ys[-1], nxt, n, n if tape.sequence else 0, sink)
                Ys.append(nxt)
        for n in reversed(range(n0, n1)):
            t = n if tape.sequence else 0
            if spec.return_sequences or n == T - 1:
                run.readout_vjp(Ys[n + 1 - n0], dY, dy3, n if spec.return_sequences else 0, t, dI, partial)
            dY = run.step_vjp(Ys[n - n0], Ys[n + 1 - n0], dY, t, dI, partial)
    sums = mm.sum_splits(partial, empty((K, N_SLOTS, N), dtype))
    return sums, dI, (dY if tape.has_V0 else None)
