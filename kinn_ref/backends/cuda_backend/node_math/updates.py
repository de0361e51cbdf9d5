"""Scalar device functions of one cell of one node: every integrator's update and its adjoint, and the node
current of the right-hand side (eq. 1) and its adjoint, shared by every kernel family.

The cell family (:mod:`.node_math.cascade`, one node's cascade in registers), the step kernels
(:mod:`.families.step_kernels`, node-parallel over global arrays) and the persistent kernels
(:mod:`.families.persistent`, batch tiles in shared memory) hold their operands in different places; each
reads one cell's operands and calls these functions, so each equation is written here once. ``term`` is the
coupling term ``(A_k V_k)_n`` of the node (zero for the uncoupled layer), ``u`` the cell's drive (``I`` for
cell 0, ``beta_k V_{k-1}`` otherwise) and ``c1, c2`` the per-pass constants of
:func:`.integrators.prepare`.
"""
from types import SimpleNamespace

from ..runtime.compat import nvvm_inlined
from ..runtime.device import kernel_cache


@kernel_cache
def node_updates():
    """The functions (a namespace; see the module docstring); numba types them at each call."""
    @nvvm_inlined()
    def linear_update(v, c1, c2, term, leak, u):
        """``Euler.step`` / ``ExpEuler.step`` (eqs. 12-13) with ``c1, c2 = E, p``:
        ``c1 V + c2 (term - leak + u)``."""
        return c1 * v + c2 * (term - leak + u)

    @nvvm_inlined()
    def linear_cotangent(d1, c1, adj, nxt):
        """``Euler.step_vjp`` / ``ExpEuler.step_vjp`` (eq. 28): the old state's cotangent from the new one's
        ``d1``, ``c1 d1 + adj + nxt`` (``adj`` the coupling adjoint, ``nxt`` the next cell's drive adjoint
        ``beta_{k+1} c2_{k+1} d1_{k+1}``)."""
        return c1 * d1 + adj + nxt

    @nvvm_inlined()
    def implicit_rhs(v, c1, leak, u):
        """The right side of ``Implicit.step`` (eq. 15) with ``c1 = C/dt``: ``c1 V - leak + u'``
        (``u'`` the drive at the end of the step)."""
        return c1 * v - leak + u

    @nvvm_inlined()
    def implicit_cotangent(lam, c1):
        """``Implicit.step_vjp`` (eq. 30): the old state's cotangent ``c1 lam`` for the solved ``lam``."""
        return c1 * lam

    @nvvm_inlined()
    def trapezoidal_rhs(v, c1, g, term, leak, u0, u1):
        """The right side of ``Trapezoidal.step`` (eq. 36) with ``c1 = 2C/dt``:
        ``(c1 - g) V + term - 2 leak + u + u'`` (``u0``, ``u1`` the drive at the start and the end of the
        step)."""
        return (c1 - g) * v + term - (leak + leak) + u0 + u1

    @nvvm_inlined()
    def trapezoidal_cotangent(lam, c1, g, adj, nxt):
        """``Trapezoidal.step_vjp`` (eq. 37): the old state's cotangent ``(c1 - g) lam + adj + nxt``
        (``adj`` the coupling adjoint of ``lam``, ``nxt`` = ``beta_{k+1} lam_{k+1}``)."""
        return (c1 - g) * lam + adj + nxt

    @nvvm_inlined()
    def current(term, g, v, leak, drive, affine):
        """``C_k F_k`` of ``dynamics.rhs`` (eq. 1): ``term - g V (- leak) + drive``; ``affine=False`` drops
        the leak (the derivative readout's higher derivatives, eq. 20), and the caller passes ``drive = 0``
        for cell 0 then."""
        cur = term - g * v
        if affine:
            cur -= leak
        return cur + drive

    @nvvm_inlined()
    def current_cotangent(z, g, adj, nxt):
        """``dynamics.rhs_vjp`` (eq. 26): the state's cotangent ``adj - g z + nxt`` for ``z = dF / C``
        (``adj`` the coupling adjoint, ``nxt`` = ``beta_{k+1} z_{k+1}``)."""
        return adj - g * z + nxt

    return SimpleNamespace(linear_update=linear_update, linear_cotangent=linear_cotangent,
                           implicit_rhs=implicit_rhs, implicit_cotangent=implicit_cotangent,
                           trapezoidal_rhs=trapezoidal_rhs, trapezoidal_cotangent=trapezoidal_cotangent,
                           current=current, current_cotangent=current_cotangent)
