"""What every kernel runs on: numba-cuda compatibility and the probe (:mod:`.compat`), the tunables
(:mod:`.config`), device arrays, launches and the kernel cache (:mod:`.device`, :mod:`.disk_cache`), the
memory pool (:mod:`.pool`) and the tape of a pass (:mod:`.tape`). Nothing here knows a KINN equation."""
