"""Viscous Burgers' equation on a periodic domain: data for operator learning ``u(x, 0) -> u(x, t_end)``.

    u_t + (u^2 / 2)_x = nu u_xx,   x in [0, L) periodic                                    (B1)

Initial conditions are Gaussian random fields ``u0 ~ N(0, a (-Delta + tau^2 I)^(-gamma))`` (the setting of
the Fourier-neural-operator benchmark: ``L = 1``, ``nu = 0.1``, ``t_end = 1``, ``a = 625``, ``tau = 5``,
``gamma = 2``). The solver is pseudo-spectral: ``rfft`` in space, the 2/3 rule against aliasing, and
ETDRK4 in time (Cox and Matthews 2002, with the contour-integral coefficients of Kassam and Trefethen
2005), on a fine grid that is then subsampled. :func:`cole_hopf` gives exact solutions to check it.
"""
from dataclasses import dataclass

import numpy as np

from .._checks import check_positive_float, check_positive_int, check_seed


def wavenumbers(n, length):
    """Angular wavenumbers ``2 pi k / L`` of ``rfft`` on ``n`` points, shape ``(n // 2 + 1,)``."""
    return 2.0 * np.pi * np.fft.rfftfreq(n, d=length / n)


def gaussian_random_field(n_samples, n_points, rng, length=1.0, scale=625.0, tau=5.0, gamma=2.0, zero_mean=False):
    """Samples of ``N(0, scale (-Delta + tau^2 I)^(-gamma))`` on a periodic grid of ``n_points`` points.

    The Fourier coefficient ``c_k`` of ``exp(i k x)`` (``k`` angular) has ``E|c_k|^2 = scale (k^2 + tau^2)^(-gamma)``:
    on the unit interval this is the Karhunen-Loeve expansion with the L2-orthonormal modes
    ``sqrt(2) cos``, ``sqrt(2) sin``. The field is smooth for ``gamma > 1/2``.

    Parameters
    ----------
    n_samples, n_points : int
    rng : numpy.random.Generator
    length, scale, tau, gamma : float
    zero_mean : bool
        Drop the constant mode.

    Returns
    -------
    ndarray, shape (n_samples, n_points)
    """
    k = wavenumbers(n_points, length)
    sigma = np.sqrt(scale * (k ** 2 + tau ** 2) ** (-gamma))
    coef = rng.standard_normal((n_samples, k.size)) + 1j * rng.standard_normal((n_samples, k.size))
    coef *= sigma / np.sqrt(2.0)
    coef[:, 0] = coef[:, 0].real * np.sqrt(2.0)   # the mean and the Nyquist mode are real
    if n_points % 2 == 0:
        coef[:, -1] = coef[:, -1].real * np.sqrt(2.0)
    if zero_mean:
        coef[:, 0] = 0.0
    return np.fft.irfft(coef * n_points, n=n_points)


def _etdrk4_coefficients(Lh, contour_points=32):
    """ETDRK4 coefficients for the diagonal linear part ``Lh = dt * L`` (Kassam and Trefethen, eq. 2.5)."""
    r = np.exp(1j * np.pi * (np.arange(1, contour_points + 1) - 0.5) / contour_points)
    LR = Lh[:, None] + r[None, :]
    E, E2 = np.exp(Lh), np.exp(Lh / 2)
    Q = np.real(np.mean((np.exp(LR / 2) - 1) / LR, axis=1))
    f1 = np.real(np.mean((-4 - LR + np.exp(LR) * (4 - 3 * LR + LR ** 2)) / LR ** 3, axis=1))
    f2 = np.real(np.mean((2 + LR + np.exp(LR) * (-2 + LR)) / LR ** 3, axis=1))
    f3 = np.real(np.mean((-4 - 3 * LR - LR ** 2 + np.exp(LR) * (4 - LR)) / LR ** 3, axis=1))
    return E, E2, Q, f1, f2, f3


def solve_burgers(u0, t_end, nu=0.1, length=1.0, dt=None, n_fine=None):
    """Solve (B1) from ``u0`` to ``t_end`` pseudo-spectrally (ETDRK4, 2/3 dealiasing).

    Parameters
    ----------
    u0 : ndarray, shape (B, n) or (n,)
        Initial values on the grid ``x_j = j L / n``.
    t_end : float
    nu : float
        Viscosity.
    length : float
        Period ``L``.
    dt : float, optional
        Time step; by default ``min(1e-3, 2 dx / max|u0|)`` on the fine grid (for the benchmark setting
        this gives a relative error near 1e-10 against a solution with 8x finer grid and 50x smaller step).
    n_fine : int, optional
        Points of the grid the equation is solved on (a multiple of ``n``; default ``2 n``, at least 128
        rounded up to a multiple of ``n``); the result is sampled back on the ``n``-point grid. For the
        benchmark's initial conditions a 64-point grid solved on 128 points agrees with a solve on 512
        points to a relative 2.5e-11 (in a seventh of the time).

    Returns
    -------
    ndarray, shape of ``u0``
        ``u(x_j, t_end)``.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    single = u0.ndim == 1
    U = np.atleast_2d(u0)
    n = U.shape[1]
    t_end = check_positive_float("t_end", t_end)
    nu, length = check_positive_float("nu", nu), check_positive_float("length", length)
    factor = -(-max(2 * n, 128) // n) if n_fine is None else check_positive_int("n_fine", n_fine) // n
    if factor * n != (n_fine or factor * n):
        raise ValueError(f"n_fine must be a multiple of the grid size {n}, got {n_fine}")
    m = factor * n
    # spectral interpolation of u0 onto the fine grid
    c = np.fft.rfft(U, axis=1)
    v = np.zeros((U.shape[0], m // 2 + 1), complex)
    v[:, :c.shape[1]] = c * factor
    if n % 2 == 0 and factor > 1:
        v[:, n // 2] *= 0.5  # the coarse Nyquist mode splits into +-n/2 on the fine grid
    k = wavenumbers(m, length)
    dealias = np.arange(k.size) < (m // 3)
    if dt is None:
        umax = max(float(np.abs(U).max()), 1e-12)
        dt = min(1e-3, 2.0 * (length / m) / umax)
    steps = int(np.ceil(t_end / dt))
    h = t_end / steps
    E, E2, Q, f1, f2, f3 = _etdrk4_coefficients(-nu * k ** 2 * h)
    g = -0.5j * k * h  # nonlinear term N(v) = -(i k / 2) F(u^2), times h

    def nonlinear(vh):
        u = np.fft.irfft(vh, n=m, axis=1)
        return g * np.fft.rfft(u * u, axis=1) * dealias

    v = v * dealias
    for _ in range(steps):
        Nv = nonlinear(v)
        a = E2 * v + Q * Nv
        Na = nonlinear(a)
        b = E2 * v + Q * Na
        Nb = nonlinear(b)
        cc = E2 * a + Q * (2 * Nb - Nv)
        Nc = nonlinear(cc)
        v = E * v + Nv * f1 + 2 * (Na + Nb) * f2 + Nc * f3
    out = np.fft.irfft(v, n=m, axis=1)[:, ::factor]
    return out[0] if single else out


def cole_hopf(potential, x, t, nu=0.1, length=1.0, n_fine=4096):
    """Exact periodic solution of (B1) with zero mean by the Cole-Hopf transform.

    ``u = -2 nu phi_x / phi`` where ``phi`` solves ``phi_t = nu phi_xx`` from
    ``phi(x, 0) = exp(-P(x) / (2 nu))`` and ``P' = u0`` (``P`` periodic: ``u0`` has zero mean). The heat
    equation is solved exactly in Fourier space on ``n_fine`` points and evaluated at ``x`` by the
    trigonometric interpolant.

    Parameters
    ----------
    potential : callable
        ``P(x)``, a periodic antiderivative of ``u0`` (vectorised).
    x : ndarray, shape (n,)
        Points in ``[0, L)``.
    t : float
    nu, length : float
    n_fine : int

    Returns
    -------
    ndarray, shape (n,)
    """
    xf = np.arange(n_fine) * length / n_fine
    logphi0 = -potential(xf) / (2 * nu)
    phi0 = np.exp(logphi0 - logphi0.max())
    k = wavenumbers(n_fine, length)
    ph = np.fft.rfft(phi0) * np.exp(-nu * k ** 2 * t)
    # evaluate phi and phi_x at x by the trigonometric interpolant
    weights = np.full(k.size, 2.0)
    weights[0] = 1.0
    if n_fine % 2 == 0:
        weights[-1] = 1.0
    phase = np.exp(1j * np.outer(x, k))
    phi = np.real(phase @ (weights * ph)) / n_fine
    phi_x = np.real(phase @ (weights * 1j * k * ph)) / n_fine
    return -2 * nu * phi_x / phi


@dataclass
class BurgersData:
    """Pairs ``(u(x, 0), u(x, t_end))`` on ``resolution`` points, as arrays ``(n_samples, resolution)``."""

    x: np.ndarray
    u0: np.ndarray
    u1: np.ndarray
    nu: float
    length: float
    t_end: float


def make_burgers_data(n_samples, resolution=256, seed=0, nu=0.1, t_end=1.0, length=1.0, zero_mean=False,
                      scale=625.0, tau=5.0, gamma=2.0):
    """Generate Burgers operator-learning pairs (random smooth initial conditions, ETDRK4 solutions).

    Parameters
    ----------
    n_samples, resolution : int
    seed : int
    nu, t_end, length : float
    zero_mean : bool
        Initial conditions without a constant mode.
    scale, tau, gamma : float
        Gaussian random field parameters (see :func:`gaussian_random_field`).

    Returns
    -------
    BurgersData
    """
    n_samples = check_positive_int("n_samples", n_samples)
    resolution = check_positive_int("resolution", resolution, minimum=8)
    rng = np.random.default_rng(check_seed("seed", seed))
    u0 = gaussian_random_field(n_samples, resolution, rng, length, scale, tau, gamma, zero_mean)
    u1 = solve_burgers(u0, t_end, nu=nu, length=length)
    x = np.arange(resolution) * length / resolution
    return BurgersData(x=x, u0=u0, u1=u1, nu=nu, length=length, t_end=t_end)


def stencil_features(u, radius=2):
    """Per-point features ``[u(x + j dx) for j = -radius..radius]`` on the periodic grid.

    Lifts a field to the grid-coupled KINN's input layout: the grid coupling is symmetric in space (it
    cannot tell left from right), and the stencil gives the first layer the one-sided differences that
    transport needs.

    Parameters
    ----------
    u : ndarray, shape (B, P)
    radius : int

    Returns
    -------
    ndarray, shape (B, P, 2 radius + 1)
    """
    return np.stack([np.roll(u, -j, axis=1) for j in range(-radius, radius + 1)], axis=-1)


def reference_predictions(u0, t_end=1.0, nu=0.1, length=1.0):
    """Two learning-free predictions of ``u(x, t_end)`` that a learned operator must beat.

    - ``"mean"``: the conserved mean of ``u0`` (what remains once everything has diffused);
    - ``"heat"``: ``u0`` evolved by the linear part of (B1) alone, ``u_t = nu u_xx`` (no advection).

    Parameters
    ----------
    u0 : ndarray, shape (B, n)

    Returns
    -------
    dict of str -> ndarray, shape (B, n)
    """
    k = wavenumbers(u0.shape[1], length)
    heat = np.fft.irfft(np.fft.rfft(u0, axis=1) * np.exp(-nu * k ** 2 * t_end), n=u0.shape[1], axis=1)
    return {"mean": np.repeat(u0.mean(axis=1, keepdims=True), u0.shape[1], axis=1), "heat": heat}
