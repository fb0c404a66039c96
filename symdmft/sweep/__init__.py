"""Parameter sweeps on Dask with resumable, self-describing results (issue 7).

``sweep(spec, scheduler=None, ...)`` runs the theory and/or the simulation at every point of a
grid of parameters (``spec``: ``symdmft.sweep.spec``), on an embedded Dask ``LocalCluster``, an
existing cluster, or serially; each finished point is kept on disk as it completes
(``store``), and the result is one ``xarray.Dataset`` with a dimension per swept axis.
"""
from .runner import sweep
from .spec import SweepSpec, load_spec
from .store import load_results

__all__ = ["sweep", "load_spec", "SweepSpec", "load_results"]
