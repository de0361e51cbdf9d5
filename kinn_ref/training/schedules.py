"""Learning-rate schedules: callables ``schedule(step) -> lr`` of the optimizer step count (0-based).

They hold no state, so a resumed run gets the same rates from the restored step count.
"""
import inspect
import math

from .._checks import check_positive_float, check_positive_int, check_real


class Constant:
    """``lr`` at every step."""

    def __init__(self, lr):
        self.lr = check_positive_float("lr", lr)

    def __call__(self, step):
        return self.lr

    def config(self):
        return {"kind": "constant", "lr": self.lr}


class StepDecay:
    """``lr * gamma ** (step // step_size)``, ``0 < gamma <= 1``."""

    def __init__(self, lr, step_size, gamma=0.1):
        self.lr = check_positive_float("lr", lr)
        self.step_size = check_positive_int("step_size", step_size)
        self.gamma = check_real("gamma", gamma, 0.0, 1.0, low_open=True)

    def __call__(self, step):
        return self.lr * self.gamma ** (step // self.step_size)

    def config(self):
        return {"kind": "step", "lr": self.lr, "step_size": self.step_size, "gamma": self.gamma}


class CosineWarmup:
    """Linear warm-up from ``lr / warmup_steps`` to ``lr`` over ``warmup_steps`` steps, then cosine decay
    to ``min_lr`` at ``total_steps`` (held there after it)."""

    def __init__(self, lr, total_steps, warmup_steps=0, min_lr=0.0):
        self.lr = check_positive_float("lr", lr)
        self.total_steps = check_positive_int("total_steps", total_steps)
        self.warmup_steps = check_positive_int("warmup_steps", warmup_steps, minimum=0)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps must be < total_steps={self.total_steps}, got {warmup_steps!r}")
        self.min_lr = check_real(f"min_lr (at most lr={self.lr})", min_lr, 0.0, self.lr)

    def __call__(self, step):
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        frac = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * frac))

    def config(self):
        return {"kind": "cosine", "lr": self.lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}


SCHEDULES = {"constant": Constant, "step": StepDecay, "cosine": CosineWarmup}


def make_schedule(config):
    """A schedule from its :meth:`config` dict (``{"kind": ..., **arguments}``).

    Raises
    ------
    ValueError
        Naming ``schedule`` and what was expected: a dict, its ``kind`` (missing or not one of
        :data:`SCHEDULES`), an argument the kind does not take or needs, or an argument out of its range.
    """
    if not isinstance(config, dict):
        raise ValueError(f"schedule must be a dict {{'kind': ..., **arguments}}, got {config!r}")
    config = dict(config)
    if "kind" not in config:
        raise ValueError(f"schedule must have a 'kind', one of {sorted(SCHEDULES)} (e.g. {{'kind': 'cosine'}}); "
                         f"got a dict with keys {sorted(config)}")
    kind = config.pop("kind")
    if not isinstance(kind, str) or kind not in SCHEDULES:
        raise ValueError(f"schedule['kind'] must be one of {sorted(SCHEDULES)}, got {kind!r}")
    cls = SCHEDULES[kind]
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise ValueError(f"schedule {kind!r} takes {sorted(accepted)}, got unknown {unknown}")
    missing = sorted(name for name, p in inspect.signature(cls).parameters.items()
                     if p.default is inspect.Parameter.empty and name not in config)
    if missing:
        raise ValueError(f"schedule {kind!r} needs {missing}")
    try:
        return cls(**config)
    except ValueError as exc:
        raise ValueError(f"schedule {kind!r}: {exc}") from None
