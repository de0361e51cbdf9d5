"""A sequence task where the cascade order matters: a damped second-order system driven by its input.

    y'' + 2 zeta omega y' + omega^2 y = omega^2 u(t)                                          (O1)

The input ``u`` is a random piecewise-constant signal (random levels held for random durations), sampled
every ``dt`` and held over each sample (zero-order hold, like a KINN sequence input); the target is the
exact response of (O1) at the sample times, from rest, computed with the matrix exponential of the
zero-order-hold discretisation. The default is critically damped (``zeta = 1``): two equal real poles, so
a cascade of two first-order Kirchhoff cells can represent it exactly and a single cell cannot.
"""
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .._checks import check_positive_float, check_positive_int, check_seed


def random_steps(n_samples, n_steps, rng, mean_hold=15.0):
    """Piecewise-constant signals in ``[-1, 1]`` whose levels are held for geometric durations.

    Returns
    -------
    ndarray, shape (n_samples, n_steps)
    """
    switch = rng.random((n_samples, n_steps)) < 1.0 / mean_hold
    switch[:, 0] = True
    levels = rng.uniform(-1.0, 1.0, (n_samples, n_steps))
    index = np.maximum.accumulate(np.where(switch, np.arange(n_steps), 0), axis=1)
    return np.take_along_axis(levels, index, axis=1)


def damped_response(u, dt, omega=1.5, zeta=1.0):
    """Exact sampled response of (O1) from rest to the zero-order-hold input ``u``.

    Parameters
    ----------
    u : ndarray, shape (B, T)
        Input held over each interval ``[n dt, (n+1) dt)``.
    dt, omega, zeta : float

    Returns
    -------
    ndarray, shape (B, T)
        ``y((n+1) dt)`` for n = 0..T-1.
    """
    A = np.array([[0.0, 1.0], [-omega ** 2, -2 * zeta * omega]])
    aug = np.zeros((3, 3))
    aug[:2, :2], aug[1, 2] = A, omega ** 2
    M = scipy.linalg.expm(dt * aug)
    Phi, gamma = M[:2, :2], M[:2, 2]
    state = np.zeros((u.shape[0], 2))
    out = np.empty_like(u, dtype=np.float64)
    for n in range(u.shape[1]):
        state = state @ Phi.T + u[:, n:n + 1] * gamma
        out[:, n] = state[:, 0]
    return out


@dataclass
class OscillatorData:
    """Input and target sequences ``(n_samples, n_steps, 1)``."""

    u: np.ndarray
    y: np.ndarray
    dt: float
    omega: float
    zeta: float


def make_oscillator_data(n_samples, n_steps=100, dt=0.1, omega=1.5, zeta=1.0, seed=0):
    """Generate driven damped-oscillator sequences (see the module docstring)."""
    n_samples = check_positive_int("n_samples", n_samples)
    n_steps = check_positive_int("n_steps", n_steps)
    dt, omega, zeta = (check_positive_float(k, v) for k, v in (("dt", dt), ("omega", omega), ("zeta", zeta)))
    rng = np.random.default_rng(check_seed("seed", seed))
    u = random_steps(n_samples, n_steps, rng)
    y = damped_response(u, dt, omega, zeta)
    return OscillatorData(u=u[..., None], y=y[..., None], dt=dt, omega=omega, zeta=zeta)
