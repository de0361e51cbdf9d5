"""Learning-rate schedules: callables ``schedule(step) -> lr`` of the optimizer step count (0-based).

They hold no state, so a resumed run gets the same rates from the restored step count.
"""
import math

from .._checks import check_positive_float, check_positive_int


class Constant:
    """``lr`` at every step."""

    def __init__(self, lr):
        self.lr = check_positive_float("lr", lr)

    def __call__(self, step):
        return self.lr

    def config(self):
        return {"kind": "constant", "lr": self.lr}


class StepDecay:
    """``lr * gamma ** (step // step_size)``."""

    def __init__(self, lr, step_size, gamma=0.1):
        self.lr = check_positive_float("lr", lr)
        self.step_size = check_positive_int("step_size", step_size)
        self.gamma = check_positive_float("gamma", gamma)

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
        if not 0 <= warmup_steps < self.total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={self.total_steps}), got {warmup_steps!r}")
        if not 0 <= min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {min_lr!r}")
        self.warmup_steps, self.min_lr = int(warmup_steps), float(min_lr)

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
    """A schedule from its :meth:`config` dict (``{"kind": ..., **arguments}``)."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in SCHEDULES:
        raise ValueError(f"schedule kind must be one of {sorted(SCHEDULES)}, got {kind!r}")
    return SCHEDULES[kind](**config)
