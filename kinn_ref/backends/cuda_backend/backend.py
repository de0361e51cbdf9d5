"""The ``cuda`` backend: the functional contract on numba.cuda kernels, and its device-resident form.

Three kernel families run a layer, the first of the ordered table :data:`.families.FAMILIES` that accepts
the spec (``tape.family`` says which):

- ``cell`` (coupling ``none``): every step of every cell of one node fused in one kernel, states in registers;
  the backward recomputes its states from checkpoints (:mod:`.families.cell_kernels`;
  :mod:`.families.cell_static` for a static input of few steps).
- ``persistent`` (dense or kirchhoff coupling, one cell of at most ``config.PERSISTENT_MAX_N`` nodes, euler or
  expeuler): one kernel runs all steps with the coupling matrix and a batch tile's states in shared memory
  (:mod:`.families.persistent`).
- ``stepper`` (every other case): one launch per step (and stage) for the node-parallel parts, the coupling
  applied by the tiled product (dense, kirchhoff) or by a stencil fused into the step kernel (grid)
  (:mod:`.families.step`).

``forward``/``backward`` take and return NumPy arrays like every backend; ``forward_device`` and
``backward_device`` take and return numba device arrays and copy nothing to the host (the non-finite flag
stays on the device until ``tape.nonfinite`` is read).

The tape owns what its backward pass reads: ``forward`` uploads ``x``, ``V0`` and the parameters (those device
arrays are the tape's) and keeps host copies of the parameters, which ``backward`` compares with the ones it
is given; ``forward_device`` copies ``x``, ``V0`` and ``dparams`` on the device (one pass over each, no host
transfer), so the gradients of ``backward_device`` are those of the pass that ran, whatever the caller's arrays
hold later. Both refuse a spec or a dtype other than the forward pass's
(:class:`~kinn_ref.errors.TapeMismatchError`).

``checkpoint_every=None`` keeps what the family needs: every state for the coupled families, and for the
fused ``none`` kernels one state per backward span (they recompute the rest; the kernels built for a static
input's ``T`` keep only the start state); ``checkpoint_every=m`` keeps
every m-th state and recomputes the others, with the same results.
"""
import contextlib

import numpy as np

from kinn_ref._checks import check_positive_int
from kinn_ref.contract import check_backward, check_forward
from kinn_ref.errors import NonFiniteStateError
from kinn_ref.tape_checks import check_dtype_matches, check_spec_matches, copy_params

from .. import check_implements
from ..compile_notice import first_call
from ..launch_warnings import quiet_launches
from . import families
from .coupling import make_coupling
from .gradients import assemble
from .integrators import prepare
from .parameterization import make_circuit
from .runtime import disk_cache
from .runtime.compat import cuda_module, simulator_active
from .runtime.device import copy, is_device_array, new_flag
from .runtime.tape import DeviceTape

cuda = cuda_module()
NAME = "cuda"


def _compiling(direction, spec, dtype, family_name):
    """The compile notice of a first pass of ``spec`` in ``dtype`` in this process (given only if it is slow)."""
    if simulator_active():                                  # the simulator compiles nothing
        return contextlib.nullcontext()
    what = (f"the {direction} pass of {spec.integrator} layers with readout {spec.readout!r} and {spec.coupling} "
            f"coupling in {np.dtype(dtype)} ({family_name} kernels)")

    def message():
        where = (f"the compiled code is cached in {disk_cache.cache_dir()} for later runs" if disk_cache.enabled()
                 else f"the compiled code is {disk_cache.location()}")
        return f"kinn-ref: compiling the cuda kernels for {what} (once per spec and dtype; {where})"
    return first_call(("cuda", direction, spec, np.dtype(dtype).str), message)


def _check_dparams(spec, dparams):
    """Keys, shapes and one float dtype of the device parameters; returns the dtype."""
    shapes = spec.param_shapes()
    if not isinstance(dparams, dict) or set(dparams) != set(shapes):
        raise ValueError(f"dparams must be a dict of device arrays with keys {sorted(shapes)}")
    dtype = getattr(dparams["W"], "dtype", None)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dparams['W'] must have dtype float64 or float32, got {dtype}")
    for name, shape in shapes.items():
        a = dparams[name]
        if not is_device_array(a) or tuple(a.shape) != shape or a.dtype != dtype:
            raise ValueError(f"dparams[{name!r}] must be a {dtype} device array of shape {shape}")
    return dtype


def _device_layout(spec, dparams, x, V0):
    """Shape checks of the device API: ``(dtype, sequence, B, T)``."""
    dtype = _check_dparams(spec, dparams)
    feature = spec.input_shape(None)[1:]
    if not is_device_array(x) or x.dtype != dtype or x.ndim not in (len(feature) + 1, len(feature) + 2) \
            or tuple(x.shape)[x.ndim - len(feature):] != feature or x.shape[0] < 1:
        raise ValueError(f"x must be a {dtype} device array of shape {spec.input_shape('B')} or "
                         f"{spec.input_shape('B', 'T')}")
    sequence = x.ndim == len(feature) + 2
    B, T = x.shape[0], (x.shape[1] if sequence else spec.n_steps)
    if T < 1:
        raise ValueError(f"x must have at least one step, got shape {x.shape}")
    if V0 is not None and (not is_device_array(V0) or V0.dtype != dtype
                           or tuple(V0.shape) != (B, spec.order, spec.total_nodes)):
        raise ValueError(f"V0 must be a {dtype} device array of shape {(B, spec.order, spec.total_nodes)}")
    return dtype, sequence, B, T


@quiet_launches
def forward_device(spec, dparams, x, V0=None, *, checkpoint_every=None):
    """Forward pass on device arrays; nothing is copied to the host.

    Parameters
    ----------
    spec : LayerSpec
    dparams : dict of device arrays
        Raw parameters (keys and shapes of ``spec.param_shapes()``, one float dtype).
    x : device array
        ``(B, D)`` static or ``(B, T, D)`` sequence input; grid: ``(B, P, D)`` or ``(B, T, P, D)``.
    V0 : device array (B, K, N), optional
    checkpoint_every : int, optional

    Returns
    -------
    y : device array
        ``(B, W)``, or ``(B, T, W)`` with ``spec.return_sequences``.
    tape : DeviceTape
        ``tape.nonfinite`` reads the non-finite flag from the device when asked. The tape holds device copies
        of ``x``, ``V0`` and ``dparams``: changing those arrays afterwards does not change its gradients.
    """
    return run_forward(spec, dparams, x, V0, checkpoint_every, own_inputs=True)


def run_forward(spec, dparams, x, V0, checkpoint_every, own_inputs, layout=None):
    """:func:`forward_device`; with ``own_inputs=False`` the tape refers to the arrays given instead of copies
    (for callers whose arrays are the tape's already, or stay unchanged until the backward pass). ``layout``
    is ``(dtype, sequence, B, T)`` of arguments checked already (by the host :func:`forward`)."""
    check_implements(NAME, spec)
    if layout is None:
        layout = _device_layout(spec, dparams, x, V0)
        if checkpoint_every is not None:
            checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    dtype, sequence, B, T = layout
    if own_inputs:
        dparams = {k: copy(v) for k, v in dparams.items()}
        x, V0 = copy(x), (None if V0 is None else copy(V0))
    chosen = families.choose(spec, dtype)
    family_name, family = chosen.name, chosen.load()
    circuit = make_circuit(spec, dparams)
    coupling = make_coupling(spec, circuit)
    consts = prepare(spec, circuit, coupling.diag())
    interval = checkpoint_every or family.default_interval(T)
    flag = new_flag()
    with _compiling("forward", spec, dtype, family_name):
        y3, states, aux = family.forward(spec, dparams, circuit, consts, coupling, x, V0, T, sequence, interval,
                                         flag, explicit_interval=checkpoint_every is not None)
    y = y3 if spec.return_sequences else y3.reshape(B, spec.readout_width)
    tape = DeviceTape(spec=spec, backend=NAME, x=x, states=states, n_steps=T, sequence=sequence,
                      has_V0=V0 is not None, checkpoint_every=checkpoint_every, interval=interval,
                      output_shape=tuple(y.shape), family=family_name, flag=flag, dtype=dtype, params=dparams,
                      circuit=circuit, consts=consts, coupling=coupling, aux=aux)
    return y, tape


@quiet_launches
def backward_device(spec, dparams, tape, dy):
    """Gradients of ``sum(dy * y)`` as device arrays (keys of ``dparams``, ``"x"`` and ``"V0"`` when given).

    The gradients are those of the pass recorded in ``tape``, computed from its copies of the parameters:
    ``dparams`` is checked for its keys, shapes and dtype only (its values are not read, which would need a
    copy to the host). The tape's non-finite flag is not read either: a non-finite pass gives non-finite
    gradients here (the NumPy :func:`backward` refuses such a tape).

    Raises
    ------
    TapeMismatchError
        When ``spec`` differs from the forward pass's, or ``dparams`` has another dtype.
    """
    if not isinstance(tape, DeviceTape):
        raise ValueError(f"tape must be the tape returned by the cuda forward, got {type(tape).__name__}")
    check_spec_matches(tape, spec)
    check_dtype_matches(tape, _check_dparams(spec, dparams), "dparams")
    return run_backward(spec, tape, dy)


def run_backward(spec, tape, dy):
    """:func:`backward_device` after its checks of ``spec`` and the parameters (the tape's are used)."""
    dtype = tape.dtype
    if not is_device_array(dy) or tuple(dy.shape) != tape.output_shape or dy.dtype != dtype:
        raise ValueError(f"dy must be a {dtype} device array of shape {tape.output_shape}")
    B = tape.x.shape[0]
    dy3 = dy if spec.return_sequences else dy.reshape(B, 1, spec.readout_width)
    chosen = families.by_name(tape.family)
    family_name, family = chosen.name, chosen.load()
    tape.coupling.start_backward()
    with _compiling("backward", spec, dtype, family_name):
        return assemble(spec, tape.params, tape, *family.backward(spec, tape, dy3))


def c_strided(a):
    """``a`` as a C-ordered array whose strides are the canonical ones.

    numpy calls an array C-contiguous whatever the stride of an axis of length 1 (``u[..., None]`` has
    stride 0 there); numba-cuda's device arrays do not, and their ``reshape`` then fails with "operation
    requires copying". Such an array is copied; any other C-contiguous array is returned as it is.
    """
    a = np.ascontiguousarray(a)
    canonical = tuple(int(np.prod(a.shape[i + 1:], dtype=np.int64)) * a.itemsize for i in range(a.ndim))
    return a if a.strides == canonical else a.copy()


def upload(a):
    """A host array on the device, with canonical C strides (:func:`c_strided`)."""
    return cuda.to_device(c_strided(a))


def to_device(params):
    """Copy a dict of NumPy arrays to the device (one copy per array)."""
    return {k: upload(v) for k, v in params.items()}


@quiet_launches
def forward(spec, params, x, V0=None, *, checkpoint_every=None, on_nonfinite="raise"):
    """The functional contract (see :func:`kinn_ref.reference.forward`): NumPy in, NumPy out, run on the GPU."""
    call = check_forward(spec, params, x, V0, checkpoint_every, on_nonfinite, host_tape=False)
    if spec.param == "raw" and np.any(params["C_raw"] <= 0):   # the host reference finds it in make_circuit
        k, n = np.argwhere(params["C_raw"] <= 0)[0]
        raise ValueError(f"params['C_raw'] must be > 0 in param='raw' mode (it is the capacitance); "
                         f"entry [{k}, {n}] is {params['C_raw'][k, n]!r}")
    params_copy = copy_params(params)
    # the uploads are the tape's own arrays: nothing of the caller's is read again
    y, tape = run_forward(spec, to_device(params_copy), upload(x), None if V0 is None else upload(V0),
                          call.checkpoint_every, own_inputs=False, layout=(call.dtype, call.sequence, call.B, call.T))
    tape.params_copy = params_copy
    tape.unstable = call.unstable
    y = y.copy_to_host()
    if tape.nonfinite is not None and on_nonfinite == "raise":
        raise NonFiniteStateError(tape.nonfinite[0], tape.nonfinite[1], spec.dt)
    return y, tape


@quiet_launches
def backward(spec, params, tape, dy):
    """The functional contract (see :func:`kinn_ref.reference.backward`): NumPy in, NumPy out.

    ``params`` are compared with the host copies the forward pass kept (the refusals of the reference); the
    tape's device copies of them are used, so nothing but ``dy`` is uploaded.
    """
    if not isinstance(tape, DeviceTape) or tape.params_copy is None:
        raise ValueError(f"tape must be the tape returned by the cuda forward, got {type(tape).__name__}"
                         + (" from forward_device (use backward_device)" if isinstance(tape, DeviceTape) else ""))
    check_backward(tape, spec, params, dy)
    grads = run_backward(spec, tape, upload(dy))
    return {k: v.copy_to_host() for k, v in grads.items()}
