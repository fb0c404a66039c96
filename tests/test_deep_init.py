"""Deep networks at initialisation: ``sd.initial_statistics`` (THEORY.md §3 "Lazy limit", O6, O9).

References, each independent of the code path it checks:

* O6 (deep linear, one input with x.x/D = 1) and its P > 1 extension, derived by hand
  below: for phi(h) = h every layer adds ``eps_Phi`` with ``Cov(h_mu h_nu, h_a h_b) =
  Kx_mua Kx_nub + Kx_mub Kx_nua`` and Price sensitivities are the identity, so
  ``N Cov(Phi^l) = l (Kx o Kx)_sym``; G^l = 1 with ``N Cov(G^l) = 2 (L - l + 1)`` everywhere.
  Exact up to rounding (tolerance 1e-10).
* neural-tangents 0.6.5 analytic NNGP / NTK kernels of Dense(W_std=1) stacks without bias,
  erf and relu, L = 1..4, stored in tests/data by tests/data/make_neural_tangents_reference.py
  (float64; the mapping to THEORY.md §1 is documented there). Agreement to 1e-12 relative:
  both sides evaluate the same closed forms in float64.
* Closed forms against quadrature / exact orthant moments: the arcsine (erf) and arc-cosine
  (relu) maps against 2D Gauss-Hermite with sympy.diff Price derivatives (erf: smooth, 1e-8)
  and against Stein/Plackett orthant moments (relu: exact, 1e-10); orthant probabilities
  against scipy's Genz quasi-Monte Carlo integration, seeded, requested error 1e-8 (spread
  over seeds ~5e-8; tolerance 5e-7); relu truncated moments against plain
  Monte Carlo (5 standard errors); four-point Gauss-Hermite moments against rules with
  twice the nodes (the documented accuracy, relative 5e-4 at unit variance).
* Price sensitivities J against central differences of the two-point maps (step 1e-5:
  truncation ~1e-10, rounding ~1e-11; tolerance 1e-6 relative + 1e-7 absolute on entries
  of size ~0.1, because for tanh/softplus both sides are 2D Gauss-Hermite sums and the
  Price side averages phi''' phi', whose quadrature error at the default 80 nodes per axis
  is ~2e-8).
* O9 structure: covariances symmetric under (mu, nu) <-> (nu, mu) and between the two
  arguments, and PSD.
"""
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from scipy.stats import multivariate_normal

import symdmft as sd
from symdmft.arch.activations import h
from symdmft.deep.expectations import GaussianRules
from symdmft.deep.orthant import orthant_moment, orthant_probability
from symdmft.deep.quadrature import tensor_moments

REFERENCE = Path(__file__).parent / "data" / "neural_tangents_reference.npz"


def _data(X):
    X = np.atleast_2d(X)
    return sd.Data(X, np.zeros(X.shape[0]))


@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_o6_deep_linear_single_input(L):
    st = sd.initial_statistics(sd.mlp(hidden_layers=L, activation="linear"), _data(np.ones(4)))
    assert st.ntk[0, 0] == pytest.approx(L + 1, rel=1e-12)
    for l in range(1, L + 1):
        assert st.var[f"Phi{l}"][0, 0] == pytest.approx(2 * l, rel=1e-10)
        assert st.var[f"G{l}"][0, 0] == pytest.approx(2 * (L - l + 1), rel=1e-10)
    assert st.var["K"][0, 0] == pytest.approx(2 / 3 * L * (L + 1) * (2 * L + 1), rel=1e-10)
    assert st.snr["K"][0, 0] == pytest.approx((L + 1) ** 2 / (2 / 3 * L * (L + 1) * (2 * L + 1)))


def test_deep_linear_many_inputs_by_hand():
    """P = 3 linear net, L = 3: per-layer covariances and the NTK covariance from the hand derivation."""
    L = 3
    X = np.random.default_rng(0).standard_normal((3, 5))
    Kx = X @ X.T / 5
    st = sd.initial_statistics(sd.mlp(hidden_layers=L, activation="linear"), _data(X))
    kk = np.einsum("ma,nb->mnab", Kx, Kx) + np.einsum("mb,na->mnab", Kx, Kx)
    ones = np.ones((3,) * 4)
    for l in range(1, L + 1):
        np.testing.assert_allclose(st.cov(f"Phi{l}"), l * kk, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(st.cov(f"G{l}"), 2 * (L - l + 1) * ones, rtol=1e-10)
        np.testing.assert_allclose(st.cov(f"Phi{l}", f"G{l}"), 0 * ones, atol=1e-12)
    # dK = sum_{l=0..L} dG^{l+1} o Kx + dPhi^l: eps_G^m enters m times (times Kx), eps_Phi^m L-m+1 times
    cov_k = sum(2 * m**2 * np.einsum("mn,ab->mnab", Kx, Kx) + (L - m + 1) ** 2 * kk
                for m in range(1, L + 1))
    np.testing.assert_allclose(st.cov("K"), cov_k, rtol=1e-10)
    np.testing.assert_allclose(st.ntk, (L + 1) * Kx, rtol=1e-12)


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_mean_kernels_equal_neural_tangents(activation, L):
    ref = np.load(REFERENCE)
    st = sd.initial_statistics(sd.mlp(hidden_layers=L, activation=activation), _data(ref["X"]),
                               fluctuations=False)
    ntk, nngp = ref[f"ntk_{activation}_L{L}"], ref[f"nngp_{activation}_L{L}"]
    np.testing.assert_allclose(st.ntk, ntk, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st.nngp, nngp, rtol=1e-12, atol=1e-14)


def _pair_inputs():
    C = np.array([[1.1, 0.4, -0.3], [0.4, 0.7, 0.2], [-0.3, 0.2, 1.4]])
    return C


def test_erf_closed_form_matches_quadrature():
    """Arcsine kernel and its SymPy Price derivatives against 2D Gauss-Hermite of sympy.diff."""
    rules = GaussianRules(sp.erf(h))
    assert rules.closed is not None
    quad = [rules._quadrature_pair(fn) for fn in (rules.phi, rules.dphi)]
    C = _pair_inputs()
    for closed, numeric in zip(rules._pair, quad):
        a = GaussianRules._pair_map(closed, C)
        b = GaussianRules._pair_map(numeric, C)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-10)


def test_relu_closed_form_matches_orthant_moments_and_quadrature():
    rules = GaussianRules(sp.Max(h, 0))
    C = _pair_inputs()
    Phi, J, Dphi, Jd = rules.pair_maps(C)
    for i, j in combinations(range(3), 2):
        c2 = C[np.ix_([i, j], [i, j])]
        assert Phi[i, j] == pytest.approx(orthant_moment((1, 1), c2), rel=1e-10)
        assert Dphi[i, j] == pytest.approx(orthant_moment((0, 0), c2), rel=1e-10)
        # Price: dE[relu relu]/dc12 = E[step step]; dE[step step]/dc12 = E[delta delta]
        assert 2 * J.reshape((3,) * 4)[i, j, i, j] == pytest.approx(orthant_moment((0, 0), c2), rel=1e-10)
        dd = 1 / (2 * np.pi * np.sqrt(np.linalg.det(c2)))
        assert 2 * Jd.reshape((3,) * 4)[i, j, i, j] == pytest.approx(dd, rel=1e-10)
    # Gauss-Hermite across the kink converges only algebraically (erratically, about n^-1.5
    # here): 320 nodes per axis give errors of 2e-5..3e-4
    from symdmft.deep.quadrature import gaussian_fields
    iu, ju = np.triu_indices(3, 1)
    c2 = np.stack([C[np.ix_([i, j], [i, j])] for i, j in zip(iu, ju)])
    H, w = gaussian_fields(c2, 320)
    np.testing.assert_allclose((np.maximum(H[:, 0], 0) * np.maximum(H[:, 1], 0)) @ w, Phi[iu, ju], rtol=1e-3)


@pytest.mark.parametrize("activation", ["tanh", "erf", "relu", "softplus"])
def test_price_sensitivities_are_derivatives_of_the_maps(activation):
    rules = GaussianRules(sd.mlp(activation=activation).activation)
    C = _pair_inputs()
    M = np.array([[0.3, -0.2, 0.5], [-0.2, 0.1, 0.4], [0.5, 0.4, -0.6]])
    Phi, J, Dphi, Jd = rules.pair_maps(C)
    eps = 1e-5
    up, down = rules.pair_maps(C + eps * M), rules.pair_maps(C - eps * M)
    for index, jac in ((0, J), (2, Jd)):
        fd = (up[index] - down[index]) / (2 * eps)
        np.testing.assert_allclose((jac @ M.ravel()).reshape(3, 3), fd, rtol=1e-6, atol=1e-7)


def test_orthant_probabilities_match_scipy():
    rng = np.random.default_rng(3)
    for k in (2, 3, 4):
        A = rng.standard_normal((k, k + 2))
        C = A @ A.T / (k + 2)
        ref = multivariate_normal.cdf(np.zeros(k), np.zeros(k), C, maxpts=200_000 * k,
                                      abseps=1e-8, releps=1e-8, rng=0)
        assert orthant_probability(C[None])[0] == pytest.approx(ref, abs=5e-7)


def test_relu_truncated_moments_match_monte_carlo():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((4, 6))
    C = A @ A.T / 6
    hs = rng.multivariate_normal(np.zeros(4), C, size=1_000_000)
    inside = np.all(hs > 0, axis=1)
    for a in [(1, 1, 1, 1), (2, 1, 0, 1), (0, 0, 2, 2), (1, 0, 0, 0)]:
        sample = np.prod(hs ** np.array(a), axis=1) * inside
        se = sample.std() / np.sqrt(sample.size)
        assert abs(orthant_moment(a, C[None])[0] - sample.mean()) < 5 * se


@pytest.mark.parametrize("activation", ["tanh", "erf"])
def test_four_point_quadrature_converged(activation):
    """Default node counts against twice as many, unit-variance inputs, all 4D moment kinds."""
    rules = GaussianRules(sd.mlp(activation=activation).activation)
    A = np.random.default_rng(5).standard_normal((4, 4))
    C = A @ A.T / 4
    C = (C / np.sqrt(np.outer(np.diag(C), np.diag(C))))[None]
    keys = [("p", "p", "p", "p"), ("d", "d", "d", "d"), ("p", "p", "d", "d")]
    base = tensor_moments(C, keys, rules._f, rules._df)
    fine = tensor_moments(C, keys, rules._f, rules._df, n=28)
    for key in keys:
        assert base[key][0] == pytest.approx(fine[key][0], rel=5e-4)
    C3 = C[:, :3, :3]
    keys3 = [("pp", "p", "p"), ("pd", "d", "p"), ("dd", "d", "d")]
    base, fine = (tensor_moments(C3, keys3, rules._f, rules._df, n=n) for n in (None, 48))
    for key in keys3:
        assert base[key][0] == pytest.approx(fine[key][0], rel=5e-4)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_covariances_symmetric_and_psd(activation):
    """O9: Sigma_q symmetric PSD, symmetric under (mu, nu) <-> (nu, mu) (L = 3, P = 4)."""
    data = sd.default_data()
    st = sd.initial_statistics(sd.mlp(hidden_layers=3, activation=activation), data)
    names = st.names
    P = st.P
    blocks = [[st.cov(a, b).reshape(P * P, P * P) for b in names] for a in names]
    full = np.block(blocks)
    np.testing.assert_allclose(full, full.T, atol=1e-12)
    assert np.linalg.eigvalsh(full).min() > -1e-10 * np.abs(full).max()
    cK = st.cov("K")
    np.testing.assert_allclose(cK, cK.transpose(1, 0, 2, 3), atol=1e-12)
    np.testing.assert_allclose(st.var["K"], np.einsum("mnmn->mn", cK))


def test_variance_accumulates_with_depth():
    """relu diagonal: each layer adds 5 to N Var Phi^l_mm / (Phi^l_mm)^2 (hand derivation).

    h ~ N(0, c): E[relu^4] = 3c^2/2, E[relu^2] = c/2, so a layer's own noise is 5 (c/2)^2,
    and the diagonal Price sensitivity is dE[relu^2]/dc = 1/2, which carries the relative
    variance of the layer below unchanged: N Var / mean^2 = 5 l (Hanin & Nica's 5L/N).
    """
    st = sd.initial_statistics(sd.mlp(hidden_layers=4, activation="relu"), sd.default_data())
    for m in range(st.P):
        inv_snr = [1 / st.snr[f"Phi{l}"][m, m] for l in range(1, 5)]
        np.testing.assert_allclose(inv_snr, [5, 10, 15, 20], rtol=1e-10)


def test_inputs_checked():
    st = sd.initial_statistics(sd.mlp(), sd.default_data(), fluctuations=False)
    with pytest.raises(ValueError, match="fluctuations"):
        st.cov("K")
    with pytest.raises(KeyError, match="Phi2"):
        sd.initial_statistics(sd.mlp(), sd.default_data()).cov("Phi2")
    with pytest.raises(TypeError):
        sd.initial_statistics("tanh", sd.default_data())
    with pytest.raises(ValueError, match="points"):
        sd.initial_statistics(sd.mlp(), sd.default_data(), points="test")
