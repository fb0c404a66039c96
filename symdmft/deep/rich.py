"""Deep MLPs in the rich regime: the infinite-width site process with responses (THEORY.md §2).

``solve_rich(net, data, grid, ...)`` returns a ``RichResult``. This module is the entry point
``sd.solve`` calls for ``hidden_layers >= 2``; the solvers behind it are being built (issue 4).
"""
from __future__ import annotations


def solve_rich(net, data, grid, samples: int = 40_000, seed: int = 0, sampler: str = "auto",
               progress: bool | None = None):
    raise NotImplementedError(
        f"sd.solve for hidden_layers >= 2 in the rich regime is not implemented yet (issue 4); "
        f"got hidden_layers={net.hidden_layers}. Deep nets at t = 0: sd.initial_statistics; "
        f"in the lazy limit: sd.lazy_solve")
