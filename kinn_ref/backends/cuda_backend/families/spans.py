"""Step bookkeeping shared by the families whose backward covers many steps per launch.

A backward launch covers a *span* of steps; spans are aligned to multiples of a fixed length from step 0
whatever states the tape keeps, so the order in which gradient sums are accumulated, and hence the
result, does not depend on ``checkpoint_every``. States are stored at absolute multiples of the storing
interval (and at the end of a launch), see :func:`store_index`.
"""


def spans(T, length):
    """``[(start, stop), ...]`` covering ``0..T`` in pieces of ``length`` aligned to multiples of it."""
    return [(s, min(s + length, T)) for s in range(0, T, length)]


def n_stores(n0, n1, every):
    """States a forward launch over steps ``n0..n1`` stores: steps that are multiples of ``every``, and ``n1``."""
    return n1 // every - n0 // every + (1 if n1 % every else 0)


def store_index(step, n0, every):
    """Slot of the state after ``step`` steps in a launch that started at ``n0`` (twin of the kernels' rule)."""
    return step // every - n0 // every - (1 if step % every == 0 else 0)


def groups(kept, starts):
    """Group span ``starts`` by the kept state they are recomputed from: ``[(source, [starts...]), ...]``."""
    kept = sorted(kept)
    out = {}
    for s in starts:
        src = max(k for k in kept if k <= s)
        out.setdefault(src, []).append(s)
    return sorted(out.items())


def stored_states(store, n0, n1, every):
    """``{step: view}`` of the states a forward launch over ``n0..n1`` stored in ``store``."""
    steps = [m * every for m in range(n0 // every + 1, n1 // every + 1)]
    if n1 % every:
        steps.append(n1)
    return {s: store[store_index(s, n0, every)] for s in steps}
