"""From a site process to the four blocks a solver needs (ARCHITECTURE.md, lower/).

    step              primal site update (h, w, delta) -> (h_next, w_next)
    features          site observables phi, g, out
    tangent_step      JVP of the step in (h, w, delta), pruned to (dh_next, dw_next)
    tangent_features  JVP of the observables, pruned to what the kernels need

The result is hashable and has a deterministic ``fingerprint`` (the cache key of the
generated module).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .ir import Block
from .ir import Pointwise, make_block
from .tangent import activation_atoms, hoist_activation, prune, second_order_block, tangent_block


@dataclass(frozen=True)
class Lowered:
    title: str
    activation: str
    derivatives: tuple       # (phi, phi', phi'') as strings, for the module header
    step: Block
    features: Block
    tangent_step: Block
    tangent_features: Block
    second_step: Block       # first and second order tangents, for the O(1/N) bias
    second_features: Block
    activations: Block       # act<n> = function of h, shared by all blocks
    kernels: tuple           # ((kernel name, feature name), ...)

    @property
    def blocks(self):
        return (self.step, self.features, self.tangent_step, self.tangent_features,
                self.second_step, self.second_features, self.activations)

    def fingerprint(self) -> str:
        text = repr((self.activation, self.derivatives, [repr(b) for b in self.blocks],
                     [b.kinds for b in self.blocks], self.kernels))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __repr__(self):
        return "\n".join(repr(b) for b in self.blocks)


def lower(site) -> Lowered:
    """Lower a site process (``symdmft.model``) to its solver blocks."""
    kernel_features = [feature for _, feature in site.kernels]
    tangent_outputs = ["dout"] + kernel_features + ["d" + f for f in kernel_features]
    net = site.net
    tangent_step = prune(tangent_block(site.step), ["dh_next", "dw_next"])
    tangent_features = prune(tangent_block(site.features), tangent_outputs)
    second_outputs = ["d2out"] + [p + f for f in kernel_features for p in ("", "d", "d2")]
    second_step = prune(second_order_block(site.step), ["dh_next", "dw_next", "d2h_next", "d2w_next"])
    second_features = prune(second_order_block(site.features), second_outputs)
    names = activation_atoms([site.step, site.features, tangent_step, tangent_features,
                              second_step, second_features])
    activations = make_block("activations", [Pointwise(s.name, a) for a, s in names.items()],
                             {"h": "vec", **{s.name: "vec" for s in names.values()}})
    return Lowered(
        title=site.title,
        activation=str(net.activation),
        derivatives=tuple(str(d) for d in net.derivatives),
        step=hoist_activation(site.step, names, compute=True),
        features=hoist_activation(site.features, names, compute=True),
        tangent_step=hoist_activation(tangent_step, names, compute=False),
        tangent_features=hoist_activation(tangent_features, names, compute=False),
        second_step=hoist_activation(second_step, names, compute=False),
        second_features=hoist_activation(second_features, names, compute=False),
        activations=activations,
        kernels=site.kernels,
    )
