"""The prototype learner: kernels against the oracle, analytic invariants,
and the optimiser's guarantees (DESIGN-NOTES §3-§4)."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from probewarp.baker import kernels as K
from probewarp.baker.cubemap import downsample_box, texel_directions
from probewarp.baker.metrics import evaluate
from probewarp.baker import prototypes as PR
from probewarp.baker.prototypes import ProbeCodec
from probewarp.baker.domain import sub_directions
from probewarp.format.errors import InputError
import naive
import tolerances as tol


def _random_state(P=5, M=4, N=3, R=4, k=2, seed=0, rho_scale=2.0):
    rng = np.random.default_rng(seed)
    Rp = R * k
    x = rng.normal(size=(P, 3))
    C = rng.normal(size=(M, 3))
    rho = rng.uniform(0.5, 2.5, M) * rho_scale   # some probes outside some spheres: misses covered
    J = rng.random((M, 6 * Rp * Rp, 3)).astype(np.float32)
    idx = rng.integers(0, M, (P, N)).astype(np.int32)
    w = rng.random((P, N)).astype(np.float32)
    return x, C, rho, J, idx, w, R, Rp, k


@pytest.mark.parametrize("k", [1, 2])
def test_render_matches_naive_decode(k):
    x, C, rho, J, idx, w, R, Rp, k = _random_state(k=k, P=3)
    sub = sub_directions(R, k)
    out = np.empty((x.shape[0], sub.shape[0], 3), np.float32)
    K._render(x, sub, C, rho, J, Rp, idx, w, out)
    protos = J.reshape(-1, 6, Rp, Rp, 3).astype(np.float64)
    for i in range(x.shape[0]):
        ref = naive.naive_decode_probe(x[i], C, rho, protos, idx[i], w[i], R)
        np.testing.assert_allclose(out[i].reshape(6, R, R, 3), ref, rtol=tol.ORACLE_RTOL, atol=tol.ORACLE_ATOL)


@pytest.mark.parametrize("k", [1, 2])
def test_adjoint_is_the_transpose(k):
    """Dot-product test: <A J, r> == <J, A^T r> to float rounding."""
    x, C, rho, J, idx, w, R, Rp, k = _random_state(k=k, P=6, seed=1)
    sub = sub_directions(R, k)
    r = np.random.default_rng(2).normal(size=(x.shape[0], sub.shape[0], 3)).astype(np.float32)
    AJ = np.empty_like(r)
    K._render(x, sub, C, rho, J, Rp, idx, w, AJ)
    G = np.zeros((3,) + J.shape)
    K._adjoint(x, sub, C, rho, Rp, idx, w, r, G)
    lhs = float(np.sum(AJ.astype(np.float64) * r))
    rhs = float(np.sum(J.astype(np.float64) * G.sum(axis=0)))
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_prototype_at_its_own_centre_is_itself_and_infinite_radius_has_no_parallax():
    x, C, rho, J, idx, w, R, Rp, k = _random_state(k=2, M=2, seed=3)
    sub = sub_directions(R, k)
    one = np.array([[0, 0]], np.int32)
    wone = np.array([[1.0, 0.0]], np.float32)
    out = np.empty((1, sub.shape[0], 3), np.float32)
    K._render(C[:1].copy(), sub, C, rho, J, Rp, one, wone, out)
    expect = downsample_box(J[0].reshape(6, Rp, Rp, 3), k)     # box filter of its own texels
    np.testing.assert_allclose(out[0].reshape(6, R, R, 3), expect, atol=1e-6)
    inf = np.full_like(rho, np.inf)
    far = np.empty_like(out)
    K._render(np.array([[7.0, -3.0, 2.0]]), sub, C, inf, J, Rp, one, wone, far)
    np.testing.assert_allclose(far, out, atol=1e-6)


def _fit_model_state(k, seed=4):
    """Random geometry and codes, the padded prototypes and the stored footprints."""
    x, C, rho, J, idx, w, R, Rp, k = _random_state(k=k, P=7, M=5, N=3, seed=seed)
    rho[1] = np.inf                                  # no parallax for one prototype
    w[2, 1] = 0.0                                    # an unused tap
    sub = sub_directions(R, k)
    dirs = PR._dirs(sub)
    src, nsrc = K.pad_table(Rp)
    Jp = np.empty((J.shape[0], src.shape[0], 3), np.float32)
    K._pad(J, src, nsrc, Jp)
    n = sub.shape[0] * sub.shape[1]
    tb = np.empty(idx.shape + (n,), np.uint16)
    tq = np.empty(idx.shape + (2, n), np.uint16)
    K._build_taps(x, dirs, C, rho, Rp, idx, w, tb, tq)
    return x, C, rho, J, Jp, idx, w, R, Rp, sub, dirs, tb, tq, src, nsrc


@pytest.mark.parametrize("k", [1, 2])
def test_fitting_model_matches_the_exact_model_and_stored_footprints_change_nothing(k):
    """The learner's padded fixed-point model is the exact model to its 2^-16
    fraction rounding, and gives the same bits from stored or recomputed
    footprints, serial or parallel."""
    x, C, rho, J, Jp, idx, w, R, Rp, sub, dirs, tb, tq, src, nsrc = _fit_model_state(k)
    S = sub.shape[1]
    exact = np.empty((x.shape[0], sub.shape[0], 3), np.float32)
    K._render(x, sub, C, rho, J, Rp, idx, w, exact)
    outs = []
    for kern, stored in [(K._render_fit, True), (K._render_fit, False), (K._render_fit_serial, True),
                         (K._render_fit_serial, False)]:
        out = np.empty_like(exact)
        kern(x, dirs, S, C, rho, Jp, Rp, idx, w, tb, tq, stored, out)
        outs.append(out)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    np.testing.assert_allclose(outs[0], exact, atol=2 ** -14)


@pytest.mark.parametrize("k", [1, 2])
def test_fitting_adjoint_is_the_transpose(k):
    """Dot-product test of the per-prototype gather adjoint (padding folded back),
    the same bits from stored or recomputed footprints, serial or parallel."""
    x, C, rho, J, Jp, idx, w, R, Rp, sub, dirs, tb, tq, src, nsrc = _fit_model_state(k, seed=5)
    S = sub.shape[1]
    P, M = x.shape[0], J.shape[0]
    rng = np.random.default_rng(6)
    r = rng.normal(size=(P, sub.shape[0], 3)).astype(np.float32)
    wt = rng.uniform(0.5, 1.5, (P, sub.shape[0])).astype(np.float32)
    AJ = np.empty_like(r)
    K._render_fit(x, dirs, S, C, rho, Jp, Rp, idx, w, tb, tq, True, AJ)
    order, starts = ProbeCodec._users(idx, M)
    Gs = []
    for kern, stored in [(K._adjoint_fit, True), (K._adjoint_fit, False), (K._adjoint_fit_serial, True)]:
        G = np.empty((M, J.shape[1], 3))
        kern(r, wt, x, dirs, S, C, rho, Rp, idx, w, tb, tq, stored, order, starts, src, nsrc,
             np.empty((M, src.shape[0], 3)), G)
        Gs.append(G)
    for G in Gs[1:]:
        np.testing.assert_array_equal(G, Gs[0])
    lhs = float(np.sum(AJ.astype(np.float64) * r * wt[..., None]))
    rhs = float(np.sum(J.astype(np.float64) * Gs[0]))
    assert lhs == pytest.approx(rhs, rel=1e-5)


def _field(R=8, n=5, depth=5.0):
    """Probes inside a textured sphere world of radius ``depth``: real parallax."""
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    d = texel_directions(R).reshape(-1, 3)
    faces = []
    for p in g:
        b = d @ p
        t = -b + np.sqrt(b * b - (p @ p - depth ** 2))
        s = (p[None] + t[:, None] * d) / depth
        v = np.stack([1 + np.sin(4 * s[:, 0]) * np.cos(3 * s[:, 1]), 1 + 0.5 * np.sin(5 * s[:, 2]),
                      1.2 + s[:, 1]], 1) * 2
        faces.append(np.maximum(v, 0).reshape(6, R, R, 3))
    return g, np.stack(faces).astype(np.float32)


@pytest.mark.parametrize("domain", ["tonemap", "linear"])
@pytest.mark.parametrize("fmt,rtol", [("rgba32f", 1e-4), ("rgba16f", 2e-2)])
def test_constant_field_round_trips(domain, fmt, rtol):
    """Exact up to the stored texel precision: float32 texels round-trip to
    float rounding; fp16 texels of the tonemapped value T(7) = 0.94 are
    1 % off in radiance (dv/dT ~ 130 there), the price of storing T."""
    g, faces = _field(R=4, n=3)
    faces[:] = np.array([0.3, 1.5, 7.0], np.float32)
    codec = ProbeCodec(n_prototypes=3, n_taps=2, prototype_res=4, n_iter=1, seed=0,
                       domain=domain, texel_format=fmt).fit(g, faces)
    np.testing.assert_allclose(codec.reconstruct(), faces, rtol=rtol)


def test_loss_never_increases_and_warp_beats_no_warp():
    g, faces = _field(R=8, n=5)
    common = dict(n_prototypes=12, n_taps=3, prototype_res=8, n_iter=3, seed=0)
    warp = ProbeCodec(**common).fit(g, faces)
    losses = [h["loss"] for h in warp.history_ if h["stage"] in ("code", "prototypes", "geometry", "swap")]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(losses, losses[1:])), losses
    nowarp = ProbeCodec(warp=False, **common).fit(g, faces)
    q_warp = evaluate(faces, warp.reconstruct())["psnr_db"]
    q_nowarp = evaluate(faces, nowarp.reconstruct())["psnr_db"]
    # the quantised history entry is the published metric itself
    assert warp.history_[-1]["psnr_db"] == pytest.approx(q_warp, abs=1e-3)
    assert q_warp > q_nowarp + 2.0
    assert np.isinf(nowarp.radii_).all() and np.isfinite(warp.radii_).all()
    assert (warp.weights_ >= 0).all()


def test_deterministic_for_a_seed_and_validates_input():
    g, faces = _field(R=4, n=3)
    a = ProbeCodec(n_prototypes=4, n_taps=2, n_iter=1, seed=5).fit(g, faces)
    b = ProbeCodec(n_prototypes=4, n_taps=2, n_iter=1, seed=5).fit(g, faces)
    np.testing.assert_array_equal(a.indices_, b.indices_)
    np.testing.assert_array_equal(a.prototypes_, b.prototypes_)
    with pytest.raises(InputError, match="n_prototypes"):
        ProbeCodec(n_prototypes=1000).fit(g, faces)
    with pytest.raises(InputError, match="multiple"):
        ProbeCodec(n_prototypes=2, prototype_res=6).fit(g, faces)
    with pytest.raises(InputError, match="positions"):
        ProbeCodec().fit(g[:, :2], faces)


# --- the estimator API: get_params / encode / decode / reconstruct -------------

#: Non-default values for every constructor parameter (get_params must carry all).
_PARAMS = dict(n_prototypes=8, n_taps=2, prototype_res=8, domain="tonemap", warp=True, fit_radius=True,
               fit_centres=True, radius=None, n_iter=2, tol=1e-3, validation=0.0, n_cg=6, n_near=6, n_content=3, swaps=True,
               coherence=0.1, texel_format="rgba16f", seed=3, reg=2e-2, progress=None, parallel=False)


@pytest.fixture(scope="module")
def fitted():
    """64 probes at R = 4, prototypes at Rp = 8 (2 x 2 sub-samples per texel)."""
    g, faces = _field(R=4, n=4)
    return g, faces, ProbeCodec(**_PARAMS).fit(g, faces)


def _checkerboard(n):
    ijk = np.stack(np.unravel_index(np.arange(n ** 3), (n, n, n)), 1)
    return ijk.sum(axis=1) % 2 == 0


def test_get_params_round_trips_into_a_new_codec(fitted):
    g, faces, codec = fitted
    params = codec.get_params()
    assert params == _PARAMS
    twin = ProbeCodec(**params)
    assert twin.get_params() == params and not hasattr(twin, "prototypes_")
    assert eval(repr(codec), {"ProbeCodec": ProbeCodec}).get_params() == params  # noqa: S307
    # every parameter reaches the fit: the twin learns the same prototypes and codes
    twin.fit(g, faces)
    np.testing.assert_array_equal(twin.prototypes_, codec.prototypes_)
    np.testing.assert_array_equal(twin.indices_, codec.indices_)
    np.testing.assert_array_equal(twin.fit_reconstruct(g, faces), codec.reconstruct())
    assert twin.set_params(n_taps=3, seed=9) is twin and twin.n_taps == 3 and twin.seed == 9
    with pytest.raises(InputError, match="^n_tap: not a ProbeCodec parameter"):
        twin.set_params(n_tap=3)


@pytest.mark.parametrize("domain", ["tonemap", "linear"])
def test_encode_the_training_set_is_as_good_as_the_fitted_codes(domain):
    g, faces = _field(R=4, n=4)
    codec = ProbeCodec(**dict(_PARAMS, domain=domain, seed=0)).fit(g, faces)
    idx, w = codec.encode(g, faces)
    assert idx.shape == w.shape == codec.indices_.shape and idx.dtype == np.int32 and w.dtype == np.float32
    assert (w >= 0).all() and idx.min() >= 0 and idx.max() < codec.centres_.shape[0]
    # weights are stored 8-bit values, as fit's
    from probewarp.format import texformats
    np.testing.assert_array_equal(w, texformats.quantize_weights(w))
    q_fit = evaluate(faces, codec.reconstruct())["psnr_db"]
    q_enc = evaluate(faces, codec.decode(g, idx, w))["psnr_db"]
    assert q_enc >= q_fit - tol.ENCODE_VS_FIT_DB, (q_enc, q_fit)
    np.testing.assert_array_equal(codec.reconstruct(g, faces), codec.decode(g, idx, w))


def test_decode_matches_the_naive_oracle(fitted):
    """Random codes (a zero-weight tap included) at positions inside the
    grid, between probes and outside it (warp misses): DESIGN-NOTES §4 by
    tests/naive.py, then the inverse tonemap."""
    g, faces, codec = fitted
    rng = np.random.default_rng(7)
    q = np.concatenate([rng.uniform(-1, 1, (2, 3)), [[2.5, -0.3, 4.0]]])
    M = codec.centres_.shape[0]
    idx = rng.integers(0, M, (3, 2)).astype(np.int32)
    w = rng.uniform(0.2, 0.7, (3, 2)).astype(np.float32)
    w[1, 1] = 0.0
    got = codec.decode(q, idx, w)
    assert got.shape == (3, 6, 4, 4, 3) and got.dtype == np.float32
    protos = codec.prototypes_.astype(np.float64)
    for i in range(3):
        ref = naive.naive_decode_probe(q[i], codec.centres_, codec.radii_, protos, idx[i], w[i], 4)
        np.testing.assert_allclose(got[i], naive.naive_inverse_tonemap(ref),
                                   rtol=tol.DECODE_RADIANCE_RTOL, atol=tol.DECODE_RADIANCE_ATOL)


def test_encode_held_out_probes_beats_the_nearest_prototype():
    """Fit on half a checkerboard, encode the other half: the N-sparse code
    beats a trivial one (the spatially nearest prototype, weight 1) by a
    margin (measured 7 dB) and stays near the training quality (measured
    2 dB below)."""
    n = 4
    g, faces = _field(R=4, n=n)
    train = _checkerboard(n)
    codec = ProbeCodec(**dict(_PARAMS, seed=0)).fit(g[train], faces[train])
    xq, fq = g[~train], faces[~train]
    q_enc = evaluate(fq, codec.reconstruct(xq, fq))["psnr_db"]
    near = np.argmin(((xq[:, None] - codec.centres_[None]) ** 2).sum(-1), axis=1)
    idx = np.zeros((len(xq), codec.n_taps), np.int32)
    w = np.zeros((len(xq), codec.n_taps), np.float32)
    idx[:, 0], w[:, 0] = near, 1.0
    q_near = evaluate(fq, codec.decode(xq, idx, w))["psnr_db"]
    q_train = evaluate(faces[train], codec.reconstruct())["psnr_db"]
    assert q_enc > q_near + 4.0, (q_enc, q_near)
    assert q_enc > q_train - 4.0, (q_enc, q_train)


def test_encode_decode_validate_their_inputs(fitted):
    g, faces, codec = fitted
    idx, w = codec.indices_, codec.weights_
    g_nan = g.copy()
    g_nan[3, 1] = np.nan
    bad = [
        (lambda: codec.encode(g[:, :2], faces), "^positions: expected"),
        (lambda: codec.encode(g.astype(str), faces), "^positions: expected a real dtype"),
        (lambda: codec.encode(g_nan, faces), "^positions: probe 3"),
        (lambda: codec.encode(g, faces[:, :5]), "^faces: expected"),
        (lambda: codec.encode(g, faces.astype(np.int32)), "^faces: expected float"),
        (lambda: codec.encode(g, np.zeros((64, 6, 8, 8, 3), np.float32)), "^faces: resolution 8"),
        (lambda: codec.encode(g[:10], faces), "^faces has 64 probes but positions has 10"),
        (lambda: codec.decode(g, idx[:10], w[:10]), "^indices: expected"),
        (lambda: codec.decode(g, idx.astype(np.float32), w), "^indices: expected an integer"),
        (lambda: codec.decode(g, idx + 100, w), "^indices: values must be in 0..7"),
        (lambda: codec.decode(g, idx, w[:, :1]), "^weights: expected"),
        (lambda: codec.decode(g, idx, np.full_like(w, np.nan)), "^weights: expected finite"),
        (lambda: codec.reconstruct(g), "^reconstruct: give both"),
    ]
    for call, msg in bad:
        with pytest.raises(InputError, match=msg):
            call()
    with pytest.raises(RuntimeError, match="not fitted"):
        ProbeCodec().encode(g, faces)


# --- determinism and thread safety (the page-parallel bake runs fits in threads) ----

_DET = dict(n_prototypes=16, n_taps=3, n_iter=2, seed=1, n_cg=4)
_FITTED = ("centres_", "radii_", "prototypes_", "indices_", "weights_")


def _det_field():
    return _field(R=8, n=6)          # 216 probes at R = 8


def _assert_same_fit(a, b):
    for name in _FITTED:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_parallel_and_serial_kernels_fit_the_same_bits():
    g, faces = _det_field()
    par = ProbeCodec(parallel=True, **_DET).fit(g, faces)
    ser = ProbeCodec(parallel=False, **_DET).fit(g, faces)
    _assert_same_fit(par, ser)
    assert [h["loss"] for h in par.history_ if "loss" in h] == [h["loss"] for h in ser.history_ if "loss" in h]


def test_stored_and_recomputed_footprints_fit_the_same_bits(monkeypatch):
    g, faces = _det_field()
    stored = ProbeCodec(**_DET).fit(g, faces)
    monkeypatch.setattr(PR, "TAPS_MAX_BYTES", 0)        # every footprint recomputed on the fly
    _assert_same_fit(ProbeCodec(**_DET).fit(g, faces), stored)


_SUBPROCESS_FIT = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import test_prototypes as T
from probewarp.baker.prototypes import ProbeCodec
g, faces = T._det_field()
c = ProbeCodec(parallel=sys.argv[3] == "1", **T._DET).fit(g, faces)
np.savez(sys.argv[2], **{k: getattr(c, k) for k in T._FITTED})
import numba.np.ufunc.parallel as p
print("pool", int(bool(p._is_initialized)))
"""


def _fit_in_subprocess(tmp_path, parallel, env_extra):
    out = tmp_path / f"fit_{int(parallel)}.npz"
    env = dict(os.environ, **env_extra)
    res = subprocess.run([sys.executable, "-c", _SUBPROCESS_FIT, str(Path(__file__).parent), str(out),
                          "1" if parallel else "0"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return np.load(out), res.stdout


def test_fit_is_independent_of_numba_and_blas_thread_counts(tmp_path):
    """What a Dask worker process computes (one numba thread, one BLAS thread)
    is bit for bit what the main process computes."""
    g, faces = _det_field()
    here = ProbeCodec(parallel=True, **_DET).fit(g, faces)
    one = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    there, _ = _fit_in_subprocess(tmp_path, True, one)
    for name in _FITTED:
        np.testing.assert_array_equal(there[name], getattr(here, name), err_msg=name)


def test_serial_fit_never_starts_numbas_thread_pool(tmp_path):
    """parallel=False must launch no parallel kernel (the workqueue layer aborts on
    concurrent launches from several threads): the pool stays uninitialised."""
    _, stdout = _fit_in_subprocess(tmp_path, False, {})
    assert stdout.split()[-1] == "0", stdout


def test_concurrent_serial_fits_in_threads_equal_the_sequential_ones():
    g, faces = _det_field()
    jobs = [dict(_DET, seed=1), dict(_DET, seed=2, n_taps=2)]
    sequential = [ProbeCodec(parallel=False, **kw).fit(g, faces) for kw in jobs]
    results = [None] * len(jobs)
    errors = []

    def work(j):
        try:
            for _ in range(2):
                results[j] = ProbeCodec(parallel=False, **jobs[j]).fit(g, faces)
        except Exception as e:                  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for a, b in zip(results, sequential):
        _assert_same_fit(a, b)


def test_exact_kmeans_is_the_same_serial_or_parallel():
    from probewarp.baker.kmeans import kmeans_exact
    X = np.random.default_rng(3).normal(size=(700, 37))
    X[:100] = X[0]                              # duplicates: ties and empty clusters
    a = kmeans_exact(X, 24, np.random.default_rng(5), parallel=True)
    b = kmeans_exact(X, 24, np.random.default_rng(5), parallel=False)
    np.testing.assert_array_equal(a, b)
    assert np.bincount(a, minlength=24).min() > 0
