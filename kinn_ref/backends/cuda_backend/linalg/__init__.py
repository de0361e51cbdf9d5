"""Linear algebra on the device: the tiled batched product (:mod:`.gemm`), the input projection and its
adjoint (:mod:`.projection`, eqs. 3 and 33) and the batched inverse of the implicit methods' matrices
(:mod:`.inverse`)."""
