"""Lowering and code generation: printers by exact strings, generated/ current, cache."""
import inspect
import os

import sympy as sp

import symdmft as sd
from symdmft.codegen import cache
from symdmft.codegen.generate import generate_builtin
from symdmft.codegen.module import emit
from symdmft.codegen.printers import NumbaPrinter, NumPyPrinter
from symdmft.lower import lower
from symdmft.lower.ir import TRAIN, Contract, Pointwise, Scalar, make_block
from symdmft.lower.tangent import tangent_block
from symdmft.model.site import TwoLayerSite

h, w, delta = sp.symbols("h w delta", real=True)
KINDS = {"h": "vec", "w": "scalar", "delta": "data", "e": "vec", "s": "vec", "v": "scalar"}
BLOCK = make_block("demo", [Pointwise("e", delta * sp.tanh(h), over=TRAIN), Contract("s", "e"),
                            Scalar("v", 2 * w)], KINDS)


def test_numba_printer_exact():
    assert NumbaPrinter().body(BLOCK, 0).splitlines() == [
        "# demo",
        "for a in range(n_train):",
        "    e[a] = delta[a]*math.tanh(h[a])",
        "for mu in range(n_point):",
        "    acc = 0.0",
        "    for a in range(n_train):",
        "        acc += kx[mu, a] * e[a]",
        "    s[mu] = acc",
        "v = 2*w"]


def test_numpy_printer_exact():
    assert NumPyPrinter().body(BLOCK, 0).splitlines() == [
        "# demo",
        "e = delta*numpy.tanh(h[:, :n_train])",
        "s = e @ kx.T",
        "v = 2*w"]


def test_tangent_is_the_symbolic_derivative():
    """de = d(delta tanh h) = ddelta tanh h + delta (1 - tanh^2 h) dh, by sympy.diff."""
    tb = tangent_block(BLOCK)
    de = next(s for s in tb.statements if s.target == "de")
    dh, ddelta = sp.symbols("dh ddelta", real=True)
    expected = ddelta * sp.tanh(h) + delta * (1 - sp.tanh(h) ** 2) * dh
    assert sp.simplify(de.expr - expected) == 0
    assert any(isinstance(s, Contract) and s.target == "ds" and s.source == "de" for s in tb.statements)


def test_generated_modules_are_current():
    """`symdmft generate` would not change generated/ (run it and commit if this fails)."""
    stale = [p.name for p, is_stale in generate_builtin(check=True) if is_stale]
    assert not stale, f"stale generated modules: {stale}; run `symdmft generate`"


def test_emission_is_deterministic_and_readable():
    lowered = lower(TwoLayerSite(sd.mlp(activation="erf")))
    a, b = emit(lowered, "numba"), emit(lowered, "numba")
    assert a == b
    assert "phi(h)   = erf(h)" in a and lowered.fingerprint() in a
    import generated.two_layer_tanh_numpy as mod
    assert "def propagate" in inspect.getsource(mod.propagate)


def test_cache_regenerates_corrupted_module(tmp_path, monkeypatch):
    """A user activation goes to SYMDMFT_CACHE_DIR; a corrupted file is rewritten, not trusted."""
    monkeypatch.setenv("SYMDMFT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_LOADED", {})
    net = sd.mlp(activation="h + 0.25*h**3")
    lowered = lower(TwoLayerSite(net))
    module = cache.load(lowered, net.activation_name, "numpy")
    path = cache.cache_path(lowered, "numpy")
    assert path.exists() and path.read_text() == emit(lowered, "numpy")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    path.write_text(path.read_text()[:200] + "\nraise RuntimeError('corrupt')\n")
    monkeypatch.setattr(cache, "_LOADED", {})
    module = cache.load(lowered, net.activation_name, "numpy")
    assert path.read_text() == emit(lowered, "numpy")
    assert module.FINGERPRINT == lowered.fingerprint()


def test_backdoor_loads_hand_edited_module(tmp_path, monkeypatch):
    """SYMDMFT_BACKDOOR=1 trusts the file on disk (for debugging a generated module)."""
    monkeypatch.setenv("SYMDMFT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_LOADED", {})
    net = sd.mlp(activation="h + 0.5*h**3")
    lowered = lower(TwoLayerSite(net))
    cache.load(lowered, net.activation_name, "numpy")
    path = cache.cache_path(lowered, "numpy")
    path.write_text(path.read_text() + "\nHAND_EDITED = True\n")
    monkeypatch.setenv("SYMDMFT_BACKDOOR", "1")
    monkeypatch.setattr(cache, "_LOADED", {})
    assert cache.load(lowered, net.activation_name, "numpy").HAND_EDITED


def test_emission_is_thread_safe():
    """Printers hold per-statement state: concurrent emissions must not mix (sweeps run
    solves on threads). Every emission from 4 threads equals the serial one."""
    from concurrent.futures import ThreadPoolExecutor
    lowered = [lower(TwoLayerSite(sd.mlp(activation=a))) for a in ("tanh", "erf", "sin(h)")]
    serial = [emit(L, "numba") for L in lowered]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda L: emit(L, "numba"), lowered * 4)) == serial * 4


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

finite = st.floats(-2.0, 2.0, allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(h=st.lists(finite, min_size=3, max_size=3), w=finite, delta=st.lists(finite, min_size=2, max_size=2),
       dh=st.lists(finite, min_size=3, max_size=3), dw=finite, dd=st.lists(finite, min_size=2, max_size=2))
def test_symbolic_tangent_matches_finite_differences(h, w, delta, dh, dw, dd):
    """The derived tangent of one site step equals a central difference of the primal step
    (both run by the IR interpreter; 3 points, 2 of them training points). Step 1e-6 on
    O(1) smooth maps: truncation ~1e-12, rounding ~1e-10; tolerance 1e-7."""
    import sympy as sp
    from symdmft.lower.interpret import run_block
    site = TwoLayerSite(sd.mlp(activation="tanh(h) + 0.1*h**2"))
    kx = [[1.0, 0.3], [0.3, 0.8], [0.5, -0.2]]
    consts = {"eta": sp.Float(0.1), "gamma0": sp.Float(1.3)}

    def step(eps):
        env = {"h": [sp.Float(a + eps * b) for a, b in zip(h, dh)], "w": sp.Float(w + eps * dw),
               "delta": [sp.Float(a + eps * b) for a, b in zip(delta, dd)], **consts}
        out = run_block(site.step, env, kx, 3, 2)
        return [float(x) for x in out["h_next"]] + [float(out["w_next"])]

    env = {"h": [sp.Float(x) for x in h], "w": sp.Float(w), "delta": [sp.Float(x) for x in delta],
           "dh": [sp.Float(x) for x in dh], "dw": sp.Float(dw), "ddelta": [sp.Float(x) for x in dd],
           **consts}
    out = run_block(tangent_block(site.step), env, kx, 3, 2)
    tangent = [float(x) for x in out["dh_next"]] + [float(out["dw_next"])]
    fd = [(a - b) / 2e-6 for a, b in zip(step(1e-6), step(-1e-6))]
    assert max(abs(a - b) for a, b in zip(tangent, fd)) < 1e-7
