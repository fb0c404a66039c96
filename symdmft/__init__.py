"""symdmft: finite-width dynamical mean field theory of wide neural networks.

Public API (ARCHITECTURE.md): ``mlp``, ``Data``, ``TimeGrid``, ``derive``, ``solve``,
``simulate``, ``sweep``. Conventions and equations: THEORY.md.
"""
from .arch import mlp
from .deep import InitStats, initial_statistics, lazy_solve
from .expand import derive
from .problem import Data, TimeGrid, default_data
from .runtime import solve
from .simulate import simulate
from . import online  # the subpackage: sd.online.solve_online, sd.online.Population
from .sweep import sweep  # the function; the package's modules: ``from symdmft.sweep import spec``

__version__ = "0.1.0"

__all__ = ["mlp", "derive", "Data", "TimeGrid", "default_data", "solve", "simulate", "sweep", "__version__",
           "initial_statistics", "lazy_solve", "InitStats", "online"]
