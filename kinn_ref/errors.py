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
