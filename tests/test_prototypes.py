"""The prototype learner: kernels against the oracle, analytic invariants,
and the optimiser's guarantees (DESIGN-NOTES §3-§4)."""
import numpy as np
import pytest

from probewarp.baker import kernels as K
from probewarp.baker.cubemap import downsample_box, texel_directions
from probewarp.baker.metrics import evaluate
from probewarp.baker.prototypes import ProbeCodec, sub_directions
import naive


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
        np.testing.assert_allclose(out[i].reshape(6, R, R, 3), ref, rtol=1e-5, atol=1e-5)


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
    losses = [h["loss"] for h in warp.history_ if h["stage"] in ("code", "prototypes", "radii")]
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
    from probewarp.format.errors import InputError
    with pytest.raises(InputError, match="n_prototypes"):
        ProbeCodec(n_prototypes=1000).fit(g, faces)
    with pytest.raises(InputError, match="multiple"):
        ProbeCodec(n_prototypes=2, prototype_res=6).fit(g, faces)
    with pytest.raises(InputError, match="positions"):
        ProbeCodec().fit(g[:, :2], faces)
