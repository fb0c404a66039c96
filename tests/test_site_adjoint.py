"""Per-site derivatives of one deep layer for the matrix-free nonlinear propagator (THEORY.md §3):
the adjoint of the site averages (symdmft.deep.site_adjoint), the source-covariance cotangent
by Price (site_price) and the noise form kappa' (site_noise).

Two references, each computed along another code path:

* central differences of the layer map as the saddle solver computes it: explicit site
  recursion (``deep.rich_site``) and responses by reverse sweeps (``deep.rich_responses``);
* the memory columns of the dense layer Hessian (``deep.site_action.layer_hessian``, third-order
  source jets), which are -D' for the kernel conjugates and the response derivatives for the
  anti-causal memory entries.
"""
import numpy as np
import pytest

import symdmft as sd
from symdmft.deep.rich_responses import site_response
from symdmft.deep.rich_site import LayerPaths
from symdmft.deep.site_action import layer_hessian, layer_source_rule
from symdmft.deep.site_adjoint import SiteState, layer_outputs, layer_vjp
from symdmft.deep.site_noise import layer_noise
from symdmft.deep.site_price import price_cotangents
from symdmft.runtime.samplers import make_rule

G0 = 1.3
NET = sd.mlp(2, "tanh", G0)
PHIS = NET.numpy_derivatives(4)


def _problem(Pa, T1, seed, sites=64):
    """Random causal memories (C strictly, E weakly lower in time), sources and weights."""
    rng = np.random.default_rng(seed)
    n = Pa * T1
    tt = np.repeat(np.arange(T1), Pa)
    strict, weak = tt[:, None] > tt[None, :], tt[:, None] >= tt[None, :]
    C = 0.4 * rng.standard_normal((n, n)) * strict
    E = 0.4 * rng.standard_normal((n, n)) * weak
    u, r = rng.standard_normal((sites, n)), rng.standard_normal((sites, n))
    wt = rng.random(sites)
    return rng, strict, weak, C, E, u, r, wt / wt.sum()


def _solver_outputs(u, r, C, E, Pa, wt, center):
    """The layer's site averages as the saddle solver computes them (rich_site, rich_responses)."""
    S, n = u.shape
    T1 = n // Pa
    CA, CB = (G0 * M.reshape(T1, Pa, T1, Pa) for M in (C, E))
    paths = LayerPaths(S, T1 - 1, Pa, NET.numpy_derivatives(2))
    for t in range(T1):
        paths.advance_h(t, u.reshape(S, T1, Pa)[:, t], CA)
        paths.advance_z(t, r.reshape(S, T1, Pa)[:, t], CB)
    A, B = np.zeros((n, n)), np.zeros((n, n))
    for t in range(T1):
        rows, cols = slice(t * Pa, (t + 1) * Pa), slice(0, (t + 1) * Pa)
        A[rows, cols] = site_response(paths, CA, CB, t, "phi", wt).reshape(Pa, -1)
        B[rows, cols] = site_response(paths, CA, CB, t, "g", wt).reshape(Pa, -1)
    phi, g, z = (a.reshape(S, n) for a in (paths.phi, paths.g, paths.z))
    f = wt @ (z * phi) / G0
    if center:
        f = f - np.tile(f[:Pa], T1)
    return dict(Phi=(phi * wt[:, None]).T @ phi, G=(g * wt[:, None]).T @ g, f=f, A=A, B=B)


@pytest.mark.parametrize("center", [False, True])
def test_outputs_equal_the_saddle_solvers(center):
    """The dense site Jacobian and the solver's reverse sweeps give the same site averages (to
    rounding: measured 1e-16; bound 1e-12)."""
    _, _, _, C, E, u, r, wt = _problem(2, 3, 0)
    mine = layer_outputs(u, r, C, E, G0, 2, PHIS, wt, center)
    ref = _solver_outputs(u, r, C, E, 2, wt, center)
    for k, v in ref.items():
        assert np.max(np.abs(getattr(mine, k) - v)) <= 1e-12, k


@pytest.mark.parametrize("output", ["Phi", "G", "f", "A", "B"])
def test_vjp_matches_central_differences_of_the_layer_map(output):
    """For a random cotangent on one kind of output, the adjoint's pairing with random directions
    of C, E, u and r equals a central difference (step 1e-5) of the solver's layer map. The
    difference's error is O(step^2 |third derivative|) ~ 1e-10 (measured <= 1.6e-9 on entries
    of size 0.01-1.6); bound 1e-7 absolute."""
    rng, strict, weak, C, E, u, r, wt = _problem(2, 3, 1)
    n = C.shape[0]
    bar = {"Phi": rng.standard_normal((n, n)), "G": rng.standard_normal((n, n)), "f": rng.standard_normal(n),
           "A": rng.standard_normal((n, n)) * strict, "B": rng.standard_normal((n, n)) * weak}[output]
    cot = layer_vjp(u, r, C, E, G0, 2, PHIS, wt, {output: bar}, center=True)

    def pairing(dC, dE, du, dr, eps):
        out = _solver_outputs(u + eps * du, r + eps * dr, C + eps * dC, E + eps * dE, 2, wt, True)
        return np.sum(bar * out[output])

    zero_m, zero_s = np.zeros_like(C), np.zeros_like(u)
    directions = {"C": (rng.standard_normal(C.shape) * strict, zero_m, zero_s, zero_s),
                  "E": (zero_m, rng.standard_normal(E.shape) * weak, zero_s, zero_s),
                  "u": (zero_m, zero_m, rng.standard_normal(u.shape), zero_s),
                  "r": (zero_m, zero_m, zero_s, rng.standard_normal(r.shape))}
    for name, d in directions.items():
        fd = (pairing(*d, 1e-5) - pairing(*d, -1e-5)) / 2e-5
        adj = np.sum(cot.C * d[0]) + np.sum(cot.E * d[1]) + np.sum(cot.sources * np.concatenate(d[2:], axis=1))
        assert abs(fd - adj) <= 1e-7, (name, fd, adj)


def _dense_case(seed=2, sites=256):
    """A random causal layer, its dense Hessian (all blocks) and the same sites."""
    rng, strict, weak, C, E, _, _, _ = _problem(2, 3, seed)
    n = C.shape[0]
    X, Y = (B @ B.T / n for B in rng.standard_normal((2, n, n)))
    make = lambda dim: make_rule(dim, sites, 0, "qmc")  # noqa: E731
    H = layer_hessian(PHIS, G0, X, Y, C, E, 2, make, center=True)
    U, rule = layer_source_rule(X, Y, make)
    s = rule.zeta @ U.T
    return rng, strict, weak, C, E, s[:, :n], s[:, n:], rule.weights, H


def test_vjp_equals_the_dense_layer_hessians_memory_columns():
    """On the dense Hessian's own sites and source root: its w-theta block at causal theta is
    -d<psi>/dtheta, and its theta-theta' block (theta anti-causal, theta' causal) is
    gamma0 d<d_a F_theta>/dtheta', the response B^T (A^T for E) differentiated. Equal to
    rounding (measured 3e-15 on entries ~1); bound 1e-12 relative."""
    rng, strict, weak, C, E, u, r, wt, H = _dense_case(sites=512)
    n = C.shape[0]
    m = 2 * n * n + n
    mem = slice(m + 2 * n * n, None)
    causal = np.concatenate([strict.ravel(), weak.ravel()])
    flat = lambda cot: np.concatenate([cot.C.ravel(), cot.E.ravel()])[causal]  # noqa: E731
    cases = [({"Phi": rng.standard_normal((n, n))}, 0), ({"G": rng.standard_normal((n, n))}, n * n),
             ({"f": rng.standard_normal(n)}, 2 * n * n)]
    for bars, off in cases:
        (bar,) = bars.values()
        ref = -bar.ravel() @ H[off:off + bar.size, mem][:, causal]
        got = flat(layer_vjp(u, r, C, E, G0, 2, PHIS, wt, bars, center=True))
        assert np.max(np.abs(got - ref)) <= 1e-12 * np.max(np.abs(ref)), list(bars)
    Uc, Ue = rng.standard_normal((n, n)) * ~strict, rng.standard_normal((n, n)) * ~weak
    ref = np.concatenate([Uc.ravel(), Ue.ravel()]) @ H[mem, mem][:, causal]
    got = G0 * flat(layer_vjp(u, r, C, E, G0, 2, PHIS, wt, {"B": Uc.T, "A": Ue.T}, center=True))
    assert np.max(np.abs(got - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_price_cotangents_equal_the_dense_source_covariance_blocks():
    """Price's theorem by the O(n^3) source Hessian (deep.site_price): for each output kind, the
    cotangent of X and Y equals minus the dense w-X (w-Y) block (third source jets) applied to
    the bars, and for anti-causal memory directions gamma0 times it equals their theta-X
    (theta-Y) block. Same sites: equal to rounding (measured 4e-16 on entries ~0.5); bound
    1e-12 relative."""
    rng, strict, weak, C, E, u, r, wt, H = _dense_case()
    state = SiteState(u, r, C, E, G0, 2, PHIS)
    n = C.shape[0]
    m = 2 * n * n + n
    blocks = {"u": slice(m, m + n * n), "r": slice(m + n * n, m + 2 * n * n)}
    mem = slice(m + 2 * n * n, None)
    for key, off, size in (("Phi", 0, n * n), ("G", n * n, n * n), ("f", 2 * n * n, n)):
        bar = rng.standard_normal((n, n) if key != "f" else n)
        got = price_cotangents(state, {key: bar}, wt, 2, center=True)
        for kind, cols in blocks.items():
            ref = -bar.ravel() @ H[off:off + size, cols]
            assert np.max(np.abs(got[kind].ravel() - ref)) <= 1e-12 * np.max(np.abs(ref)), (key, kind)
    Uc, Ue = rng.standard_normal((n, n)) * ~strict, rng.standard_normal((n, n)) * ~weak
    got = price_cotangents(state, {"B": Uc.T, "A": Ue.T}, wt, 2, center=True)
    for kind, cols in blocks.items():
        ref = np.concatenate([Uc.ravel(), Ue.ravel()]) @ H[mem, cols]
        assert np.max(np.abs(G0 * got[kind].ravel() - ref)) <= 1e-12 * np.max(np.abs(ref)), kind


def test_noise_form_equals_the_dense_conjugate_blocks():
    """kappa' on (w, anti-causal theta) directions by Var(a') + <a''> (deep.site_noise: no Price,
    no third jets) equals the dense Hessian's w-w, w-theta and theta-theta blocks, for pairs of
    directions and for the kernel and memory parts alone. Rounding (measured 7e-15 on entries
    ~20); bound 1e-12 relative."""
    rng, strict, weak, C, E, u, r, wt, H = _dense_case()
    n = C.shape[0]
    m = 2 * n * n + n
    keep = np.r_[0:m, m + 2 * n * n:H.shape[0]]
    Hc = H[np.ix_(keep, keep)]
    st = SiteState(u, r, C, E, G0, 2, PHIS)
    dirs = [dict(Phi=rng.standard_normal((n, n)), G=rng.standard_normal((n, n)), f=rng.standard_normal(n),
                 C=rng.standard_normal((n, n)) * ~strict, E=rng.standard_normal((n, n)) * ~weak) for _ in range(3)]
    zero = lambda d, keys: {k: 0 * v if k in keys else v for k, v in d.items()}  # noqa: E731
    for part in (dirs, [zero(d, "CE") for d in dirs], [zero(d, ("Phi", "G", "f")) for d in dirs]):
        V = np.array([np.concatenate([d["Phi"].ravel(), d["G"].ravel(), d["f"], d["C"].ravel(), d["E"].ravel()])
                      for d in part])
        ref = V @ Hc @ V.T
        assert np.max(np.abs(layer_noise(st, part, wt, 2, center=True) - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_fused_response_hessian_equals_the_numpy_expressions():
    """site_price_kernel.add_response_hessian (one Numba loop per site) against
    site_price.response_hessian_numpy on the same factors: rounding (bound 1e-12 relative)."""
    from symdmft.deep.site_price import memory_products, response_hessian_numpy, response_parts
    from symdmft.deep.site_price_kernel import add_response_hessian
    from symdmft.deep.site_adjoint import site_adjoint
    rng, strict, weak, C, E, u, r, wt = _problem(2, 3, 5)
    n = C.shape[0]
    st = SiteState(u, r, C, E, G0, 2, PHIS)
    bars = {"A": rng.standard_normal((n, n)) * strict, "B": rng.standard_normal((n, n)) * weak}
    _, _, rows, W = site_adjoint(st, bars, 2, factors=True)
    MC, ME = memory_products(st)
    NC, NE = np.swapaxes(W, 1, 2) @ MC[:, rows], np.swapaxes(W, 1, 2) @ ME[:, rows]
    parts = response_parts(st, bars["A"], bars["B"], MC, ME, NC, NE)
    ref = response_hessian_numpy(parts, G0)
    got = add_response_hessian(*parts, G0, np.zeros_like(ref))
    assert np.max(np.abs(got - ref)) <= 1e-12 * np.max(np.abs(ref))
