"""JSON-lines metrics: one JSON object per epoch, the file rewritten atomically on every append."""
import json
from pathlib import Path

from .atomic import atomic_write_text


class MetricsLog:
    """Epoch records kept in memory and mirrored to a ``.jsonl`` file.

    Parameters
    ----------
    path : str or Path, optional
        Where to write; ``None`` keeps the records in memory only.
    """

    def __init__(self, path=None):
        self.path = None if path is None else Path(path)
        self.records = []

    def append(self, record):
        """Add one record (a JSON-serialisable dict) and rewrite the file."""
        self.records.append(dict(record))
        self._write()

    def truncate(self, epoch):
        """Keep the records up to ``epoch``, read from the file when there is one (used when resuming).

        A run appends an epoch's record before writing that epoch's checkpoint, so after a crash the file
        may hold records past the checkpoint's epoch; truncating to it drops them (they are recomputed).
        """
        if self.path is not None:
            self.records = read_metrics(self.path) if self.path.exists() else []
        self.records = [r for r in self.records if r.get("epoch", 0) <= epoch]
        self._write()

    def _write(self):
        if self.path is not None:
            atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records))


def read_metrics(path):
    """The records of a ``.jsonl`` metrics file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
