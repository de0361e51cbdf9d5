"""Device-resident training, twin of :mod:`kinn_ref.training`: losses (:mod:`.losses`), the conductance
penalty (:mod:`.regularization`), mini-batches (:mod:`.batches`), the step's checks (:mod:`.step_checks`) and
the whole step with its optimizers (:mod:`.step`)."""
