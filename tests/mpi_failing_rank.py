"""Run under ``mpiexec -n 2`` (tests/test_scaleout_mpi.py): ``fail OUT``, a data-parallel run of 3 epochs whose
rank 1 fails in epoch 2; ``stop OUT``, the same run stopped on every rank after epoch 2 (to be resumed)."""
import sys

from kinn_ref.scaleout.data_parallel import DataParallelTrainer
from kinn_ref.scaleout.mpi import DistributedTrainingError, MpiCommunicator
from kinn_ref.tasks.run import train_task


class FailsOnRankOne(DataParallelTrainer):
    """Rank 1's backward pass raises from the second epoch on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        backward = self.model.backward

        def failing(dy):
            if self.communicator.rank == 1 and self.epoch >= 1:
                raise RuntimeError("injected failure of rank 1")
            return backward(dy)
        self.model.backward = failing


class Stopped(Exception):
    """Every rank stops here after epoch 2, as after an interrupt."""


class StopsAfterTwoEpochs(DataParallelTrainer):
    def fit(self, *args, **kwargs):
        def stop(trainer, record):
            if trainer.epoch == 2:
                raise Stopped()
        return super().fit(*args, callback=stop, **kwargs)


def main(action, out):
    communicator = MpiCommunicator()
    kind = {"fail": FailsOnRankOne, "stop": StopsAfterTwoEpochs}[action]
    try:
        train_task("oscillator", "kinn-k1", out_dir=out, epochs=3, progress=False, warmup=False,
                   trainer_class=lambda *a, **k: kind(*a, communicator=communicator, **k))
    except Stopped:
        return 0
    except DistributedTrainingError as exc:
        print(f"rank {communicator.rank}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except BaseException:
        communicator.abort(2)     # an error outside the all-reduce: no rank may wait for this one
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
