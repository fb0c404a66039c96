"""Front end: architectures (THEORY.md §1)."""
from .activations import BUILTIN, h, parse_activation
from .mlp import MLP, check_positive, mlp

__all__ = ["BUILTIN", "MLP", "check_positive", "h", "mlp", "parse_activation"]
