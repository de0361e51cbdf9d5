"""Tools that look at the kernels rather than run a layer: the PTX register and spill report of every kernel
a workload launches (:mod:`.ptx_check`) and the host-device copy counter (:mod:`.transfers`)."""
