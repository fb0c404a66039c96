"""Reference NNGP / NTK values from neural-tangents, stored for tests/test_deep_init.py.

Run once, in a separate virtual environment (neural-tangents is not a dependency of
symdmft; its last release 0.6.5 imports only with these pins):

    python3 -m venv /tmp/ntenv
    /tmp/ntenv/bin/pip install neural-tangents==0.6.5 jax==0.4.30 jaxlib==0.4.30 tf2jax==0.3.6
    /tmp/ntenv/bin/python tests/data/make_neural_tangents_reference.py

It writes ``tests/data/neural_tangents_reference.npz``: the inputs X (P, D) and, for each
activation in (erf, relu) and depth L = 1..4, the analytic kernels of

    stax.serial([Dense(512, W_std=1), act] * L, Dense(1, W_std=1))      (no bias, 'ntk' parameterisation)

as ``nngp_<act>_L<L>`` and ``ntk_<act>_L<L>`` (P, P), computed in float64.

Mapping to symdmft (THEORY.md §1), verified by the test: neural-tangents' Dense divides by
sqrt(fan-in) exactly as h^1 = W^0 x / sqrt(D), h^{l+1} = W^l phi(h^l) / sqrt(N), so its
input covariance is Kx = X X^T / D; the readout Dense(1, W_std=1) has NNGP
E[phi phi^T] = Phi^L(0, 0), and its NTK (sum over layers of the parameter-gradient Gram
matrices) equals K(0) = sum_{l=0..L} G^{l+1} * Phi^l. The mean-field output scale
1/(gamma0 N) and the step eta gamma0^2 N cancel in K, so no factor of N or gamma0 appears.
stax.Erf() is erf(x) (a=1, b=1, c=0), stax.Relu() is max(x, 0). The hidden width 512
does not enter analytic kernels.
"""
from pathlib import Path

import numpy as np
import jax

jax.config.update("jax_enable_x64", True)

from neural_tangents import stax  # noqa: E402

OUT = Path(__file__).with_name("neural_tangents_reference.npz")


def inputs():
    """Five points in D = 3 with unequal norms (the kernels' norm dependence is tested too)."""
    rng = np.random.default_rng(20240605)
    X = rng.standard_normal((5, 3))
    return X * np.array([0.5, 1.0, 1.5, 2.0, 0.8])[:, None]


def main():
    X = inputs()
    acts = {"erf": stax.Erf, "relu": stax.Relu}
    out = {"X": X}
    for name, act in acts.items():
        for L in range(1, 5):
            layers = []
            for _ in range(L):
                layers += [stax.Dense(512, W_std=1.0), act()]
            layers.append(stax.Dense(1, W_std=1.0))
            _, _, kernel_fn = stax.serial(*layers)
            k = kernel_fn(X, None, ("nngp", "ntk"))
            out[f"nngp_{name}_L{L}"] = np.asarray(k.nngp, dtype=np.float64)
            out[f"ntk_{name}_L{L}"] = np.asarray(k.ntk, dtype=np.float64)
    import neural_tangents
    out["version"] = np.array(neural_tangents.__version__)
    np.savez(OUT, **out)
    print(f"wrote {OUT} (neural-tangents {neural_tangents.__version__}, jax {jax.__version__})")


if __name__ == "__main__":
    main()
