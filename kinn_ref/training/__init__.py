"""Training without a deep-learning framework: losses with hand-derived gradients, optimizers, schedules,
gradient clipping, conductance regularisation, a stability guard, and a reproducible, checkpointed trainer.
"""
from ..errors import NonFiniteTrainingError
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .clipping import clip_by_global_norm, global_norm
from .losses import accuracy, mse, relative_l2, softmax_cross_entropy
from .models import MLP, build_model
from .optimizers import SGD, Adam, AdamW, make_optimizer
from .regularization import conductance_penalty
from .schedules import Constant, CosineWarmup, StepDecay, make_schedule
from .stability import StabilityGuard, power_spectral_radius
from .trainer import Trainer

__all__ = ["Trainer", "MLP", "build_model", "mse", "relative_l2", "softmax_cross_entropy", "accuracy", "SGD",
           "Adam", "AdamW", "make_optimizer", "Constant", "StepDecay", "CosineWarmup", "make_schedule",
           "clip_by_global_norm", "global_norm", "conductance_penalty", "StabilityGuard", "power_spectral_radius",
           "save_checkpoint", "load_checkpoint", "CheckpointError", "NonFiniteTrainingError"]
