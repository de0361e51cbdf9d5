"""Exceptions raised by kinn_ref."""


class NonFiniteStateError(FloatingPointError):
    """A forward pass produced a non-finite state.

    Attributes
    ----------
    step : int
        Index of the step (0-based) whose update produced the first non-finite value.
    cell : int
        Index of the first cell (0-based) of the cascade holding a non-finite value.
    """

    def __init__(self, step, cell, dt=None):
        self.step = int(step)
        self.cell = int(cell)
        hint = "" if dt is None else f" with dt={dt!r}; check the stable dt of the integrator"
        super().__init__(
            f"state became non-finite at step {self.step} in cell {self.cell}{hint} "
            "(pass on_nonfinite='flag' to get the result flagged instead)"
        )


class UnstableStepError(ValueError):
    """A time step larger than the largest stable step of the integrator on the given circuit.

    Attributes
    ----------
    dt : float
        The refused step.
    dt_max : float
        The largest stable step (every ``0 < dt <= dt_max`` is stable).
    integrator : str
    """

    def __init__(self, message, dt, dt_max, integrator):
        self.dt = float(dt)
        self.dt_max = float(dt_max)
        self.integrator = integrator
        super().__init__(message)


class UnstableStepWarning(RuntimeWarning):
    """A time step beyond the integrator's stable range is used anyway (asked for, or no stable step exists)."""


class DivergentStepError(NonFiniteStateError, UnstableStepError):
    """A forward pass refused before it runs: ``dt`` is outside the integrator's stable region for a circuit
    that decays in continuous time, so the state would grow by the spectral radius ``rho > 1`` per step.

    A :class:`NonFiniteStateError` (the pass's result would not be trustworthy) and an
    :class:`UnstableStepError` (the step is the cause). The rule is in :mod:`kinn_ref.divergence`.

    Attributes
    ----------
    step : int
        First step (0-based) after which a rounding error on the fastest growing mode reaches the size of
        the state.
    cell : int
        First cell (0-based) of the cascade whose step map grows.
    dt, dt_max : float
        The step and the largest stable step.
    rho : float
        Spectral radius of that cell's step map at ``dt``.
    integrator : str
    """

    def __init__(self, message, step, cell, dt, dt_max, rho, integrator):
        self.step = int(step)
        self.cell = int(cell)
        self.dt = float(dt)
        self.dt_max = float(dt_max)
        self.rho = float(rho)
        self.integrator = integrator
        Exception.__init__(self, message)


class TapeMemoryError(MemoryError):
    """A forward pass whose tape (the states kept for the backward pass) does not fit in the memory available.

    Raised before the pass runs (:func:`kinn_ref.tape_memory.check_tape_memory`).

    Attributes
    ----------
    needed : int
        Bytes the tape would take.
    available : int
        Bytes of memory available when the pass was asked for.
    checkpoint_every : int or None
        The smallest ``checkpoint_every`` whose tape fits, or None when none does.
    """

    def __init__(self, message, needed, available, checkpoint_every=None):
        self.needed = int(needed)
        self.available = int(available)
        self.checkpoint_every = checkpoint_every
        super().__init__(message)


class NonFiniteTrainingError(FloatingPointError):
    """Training produced NaN or infinity in a gradient, a parameter or the optimizer state.

    The offending value is never applied to a checkpoint: the run stops before the update or the save.

    Attributes
    ----------
    name : str
        What holds the non-finite value (``"gradient of 'layers.0.g_raw'"``, ``"parameter ..."``, ...).
    epoch : int
        The epoch (1-based) being trained or saved.
    step : int or None
        The optimizer step (1-based count, as in the metrics' ``step``) being taken, when there is one.
    """

    def __init__(self, message, name, epoch, step=None):
        self.name = name
        self.epoch = int(epoch)
        self.step = None if step is None else int(step)
        super().__init__(message)


class TapeMismatchError(ValueError):
    """``backward`` was given a ``spec`` or ``params`` other than those of the forward pass that recorded the tape.

    The gradient of a tape is that of the pass it recorded; a different spec (another integrator, ``dt``,
    ...), parameters changed since the forward pass (an update made before ``backward``) or parameters of
    another dtype would give gradients of no computation that was run, so ``backward`` refuses them.

    Attributes
    ----------
    argument : str
        What differs: ``"spec"``, ``"params"`` (the dtype) or ``"params['W']"`` (a changed array; ``dparams``
        for the device API).
    """

    def __init__(self, message, argument):
        self.argument = argument
        super().__init__(message)


class BackendUnsupportedError(ValueError, NotImplementedError):
    """A backend was asked for a layer it does not implement (e.g. an integrator only the CPU backends have).

    A ValueError, since the ``backend`` argument names a backend that cannot run the ``spec``; and a
    NotImplementedError, so that ``kinn-ref golden verify`` lists such a case as unsupported, not failed.

    Attributes
    ----------
    backend : str
    """

    def __init__(self, message, backend):
        self.backend = backend
        super().__init__(message)
