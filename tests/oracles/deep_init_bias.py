"""O(1/N) mean corrections of a two-hidden-layer net's kernels at initialisation, by hand
(numpy and scipy only, no symdmft). THEORY.md §3 ("Mean (bias) correction"), at t = 0.

Net: h1 = W1 x / sqrt(D), h2 = W2 phi(h1) / sqrt(N), readout w; every weight N(0, 1); one
input with Kx = x.x / D. Kernels Phi^l = <phi(h^l)^2>, G^2 = <phi'(h2)^2 w^2>,
G^1 = <phi'(h1)^2 z1^2> with z1 = W2^T g2 / sqrt(N), g2 = phi'(h2) w, and the NTK
K = Kx G^1 + Phi^1 G^2 + Phi^2. Averages over u ~ N(0, Kx) are written <.>, and
M(x) = E_{v~N(0,x)} phi(v)^2, Dg(x) = E_{v~N(0,x)} phi'(v)^2 (derivatives in x by Price).

* Phi^1 is an average of N independent terms: unbiased.
* Given layer 1, h2 is exactly Gaussian with the empirical variance Phi1_N, so
  E Phi^2 = E M(Phi1_N) and E G^2 = E Dg(Phi1_N) (w independent of h2): expanding in
  delta = Phi1_N - Phi1 (Var delta = Var(phi^2) / N),
      N (E Phi^2 - Phi^2) = 1/2 M''(Phi1) Var(phi(u)^2),  N (E G^2 - G^2) = 1/2 Dg''(Phi1) Var(phi(u)^2).
* z1_i^2 = (1/N) sum_j W2_ji^2 g2_j^2 + cross terms whose mean vanishes (E w_j w_j' = 0). As h2_j
  contains W2_ji phi(h1_i) / sqrt(N), Stein's lemma twice gives
  E[W2_ji^2 phi'(h2_j)^2] = Dg(Phi1_N) + (phi(h1_i)^2 / N) E[(phi'^2)''(v)], with
  E[(phi'^2)''] = 2 Dg'(Phi1). So with X = <phi'(h1)^2>_N,
      N (E G^1 - G^1) = <phi'^2> 1/2 Dg'' Var(phi^2) + Dg' Cov(phi'^2, phi^2) + 2 Dg' <phi'^2 phi^2>
  (the last term is the response of z1 to h2 through the shared W2: the equal-time B).
* N (E K - K) = Kx c(G^1) + Phi1 c(G^2) + N Cov(G^2, Phi^1) + c(Phi^2), N Cov(G^2, Phi^1) =
  Dg'(Phi1) Var(phi^2).

Integrals by adaptive quadrature (scipy.integrate.quad, 1e-14), the x-derivatives of M and Dg
by a degree-10 polynomial fit on 13 points spaced 1e-2 (error ~1e-9 here).
"""
import numpy as np
from scipy.integrate import quad


def gaussian_mean(f, var):
    s = np.sqrt(var)
    return quad(lambda z: f(s * z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi), -40, 40, limit=400,
                epsabs=1e-14)[0]


def _derivative(F, x, k, h=1e-2):
    pts = np.arange(-6, 7) * h
    c = np.polyfit(pts, np.array([F(x + p) for p in pts]), 10)
    return np.polyval(np.polyder(c, k), 0.0)


def initial_corrections(phi, dphi, Kx: float = 1.0) -> dict:
    """N (E o - o_inf) at t = 0 for o = Phi2, G2, G1, K (module docstring); phi, dphi vectorised."""
    Phi1 = gaussian_mean(lambda u: phi(u) ** 2, Kx)
    M = lambda x: gaussian_mean(lambda v: phi(v) ** 2, x)             # noqa: E731
    Dg = lambda x: gaussian_mean(lambda v: dphi(v) ** 2, x)           # noqa: E731
    var_phi2 = gaussian_mean(lambda u: phi(u) ** 4, Kx) - Phi1 ** 2
    mean_dphi2 = gaussian_mean(lambda u: dphi(u) ** 2, Kx)
    mixed = gaussian_mean(lambda u: dphi(u) ** 2 * phi(u) ** 2, Kx)
    M2, D1, D2 = _derivative(M, Phi1, 2), _derivative(Dg, Phi1, 1), _derivative(Dg, Phi1, 2)
    c = {"Phi2": 0.5 * M2 * var_phi2, "G2": 0.5 * D2 * var_phi2}
    c["G1"] = mean_dphi2 * 0.5 * D2 * var_phi2 + D1 * (mixed - mean_dphi2 * Phi1) + 2 * D1 * mixed
    c["K"] = Kx * c["G1"] + Phi1 * c["G2"] + D1 * var_phi2 + c["Phi2"]
    return c
