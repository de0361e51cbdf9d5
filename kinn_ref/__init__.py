"""kinn_ref: the framework-free reference implementation of Kirchhoff-Inspired Neural Networks."""
from .backends import available_backends, registered_backends
from .errors import DivergentStepError, NonFiniteStateError, TapeMemoryError, TapeMismatchError, UnstableStepError
from .functional import backward, forward
from .parameterization import init_params
from .layers import KINNLayer, KINNLayers
from .network import KINN
from .spec import LayerSpec
from .tasks.heat import solve_pde_with_kinn

__all__ = ["LayerSpec", "init_params", "forward", "backward", "available_backends", "registered_backends",
           "NonFiniteStateError", "DivergentStepError", "UnstableStepError", "TapeMemoryError", "TapeMismatchError",
           "KINN", "KINNLayer", "KINNLayers", "solve_pde_with_kinn"]
__version__ = "0.1.0"
