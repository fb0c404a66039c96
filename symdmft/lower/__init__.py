"""Lowering: site rules as an IR of statements; tangent passes by sympy.diff."""
from .ir import POINT, TRAIN, Block, Contract, Pointwise, Scalar, Total
from .lowering import Lowered, lower
from .tangent import prune, tangent_block

__all__ = ["POINT", "TRAIN", "Block", "Contract", "Pointwise", "Scalar", "Total",
           "Lowered", "lower", "prune", "tangent_block"]
