"""Scale-out on engines people already run (docs/scaling.md).

- :mod:`.engine`: independent points of a sweep (stability-map rows, golden cases, training runs) run serially
  in this process, on a local Dask cluster (``workers=N``) or on an existing one (``scheduler=ADDRESS``); each
  finished point is persisted atomically, so an interrupted sweep resumes without recomputing it.
- :mod:`.stability_sweep`, :mod:`.golden_sweep`, :mod:`.training_sweep`: the three sweeps of the CLI.
- :mod:`.mpi`, :mod:`.data_parallel`: data-parallel training over MPI ranks (``mpiexec -n R kinn-ref train
  ... --distributed mpi``), gradients all-reduced in a fixed order.
- :mod:`.device_allreduce`: the same all-reduce on GPU device arrays through NCCL (CuPy).
- :mod:`.device_training`: data-parallel training on the cuda backend with the whole step on each rank's GPU
  (``mpiexec -n R kinn-ref train --backend cuda --distributed mpi``), its gradients all-reduced by NCCL.

Dask and mpi4py are optional extras (``dask``, ``mpi``), imported only when a command asks for them.
"""
