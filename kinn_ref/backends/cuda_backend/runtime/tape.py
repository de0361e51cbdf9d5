"""The tape of a ``cuda`` forward pass: the contract's :class:`~kinn_ref.contract.Tape` with device arrays."""
from dataclasses import dataclass, field

import numpy as np

NO_NONFINITE = np.int32(2 ** 31 - 1)


@dataclass
class DeviceTape:
    """What a ``cuda`` forward pass keeps for its backward pass.

    Attributes
    ----------
    spec : LayerSpec
    backend : str
        ``"cuda"``.
    x : device array
        The tape's copy of the input (static ``(B, D)``/``(B, P, D)`` or sequence ``(B, T, D)``/``(B, T, P, D)``):
        the upload of :func:`~.backend.forward`, a device copy made by :func:`~.backend.forward_device`.
    states : dict of int -> device array (B, K, N) or None
        Stacked states kept by step index; ``states[0]`` (the tape's copy of ``V0``) is None when the pass
        started from zeros.
    n_steps : int
    sequence : bool
    has_V0 : bool
    checkpoint_every : int or None
        As requested; the interval actually used is ``interval``.
    interval : int
        Steps between kept states (``checkpoint_every``, or the family's default: every step for the coupled
        families, whole backward spans for the fused ``none`` kernels, which recompute their states).
    output_shape : tuple
    family : str
        ``"cell"``, ``"persistent"`` or ``"stepper"``: which kernels ran (see :mod:`.backend`).
    flag : device array, int32 (1,)
        ``step*K + cell`` of the first non-finite state, or the largest int32 when there is none.
    dtype : numpy.dtype
        Dtype of the computation.
    params_copy : dict of ndarray or None
        Host copies of the parameters of :func:`~.backend.forward`, which :func:`~.backend.backward` compares
        with the ones it is given; None for a tape of :func:`~.backend.forward_device`.
    params : dict of device arrays
        The tape's device copies of the parameters the pass ran with (the backward pass reads these).
    circuit, consts, coupling : device quantities of the pass
    aux : SimpleNamespace
        What the family keeps besides the states (the projected input ``currents``, the state buffer).
    unstable : kinn_ref.divergence.Unstable or None
        Set by :func:`~.backend.forward` with ``on_nonfinite="flag"`` for a ``dt`` outside the stable region
        (the device API does not run the pre-check).
    """

    spec: object
    backend: str
    x: object
    states: dict
    n_steps: int
    sequence: bool
    has_V0: bool
    checkpoint_every: int
    interval: int
    output_shape: tuple
    family: str
    flag: object
    dtype: object = None
    params_copy: dict = field(default=None, repr=False)
    params: dict = field(default=None, repr=False)
    circuit: object = field(default=None, repr=False)
    consts: object = field(default=None, repr=False)
    coupling: object = field(default=None, repr=False)
    aux: object = field(default=None, repr=False)
    unstable: object = None
    _nonfinite: object = field(default=False, repr=False)

    def __repr__(self):
        from kinn_ref.contract import tape_repr
        known = None if self._nonfinite is False else self._nonfinite     # never read the device for a repr
        text = tape_repr(self, self.x.dtype, {"x": self.x}, known)
        return f"{text[:-1]}, family={self.family!r}, interval={self.interval})"

    @property
    def nonfinite(self):
        """``(step, cell)`` of the first non-finite state, or None (reads 4 bytes from the device once)."""
        if self._nonfinite is False:
            code = int(self.flag.copy_to_host()[0])
            K = self.spec.order
            self._nonfinite = None if code == int(NO_NONFINITE) else (code // K, code % K)
        return self._nonfinite
