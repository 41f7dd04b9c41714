"""DESIGN-NOTES §5 metrics against the plain-numpy oracle."""
import numpy as np
import pytest

from probewarp.baker import metrics
import naive


def _pair(P=5, R=4, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.lognormal(0.0, 1.5, (P, 6, R, R, 3))
    test = ref * rng.uniform(0.7, 1.3, ref.shape) - 0.05  # includes negatives
    return ref, test


def test_psnr_and_log_rmse_match_oracle():
    ref, test = _pair()
    got = metrics.evaluate(ref, test)
    assert got["psnr_db"] == pytest.approx(naive.naive_psnr(ref, test), abs=1e-9)
    assert got["log_rmse"] == pytest.approx(naive.naive_log_rmse(ref, test), abs=1e-12)
    assert got["n_probes"] == 5


def test_chunked_pooling_equals_one_shot():
    ref, test = _pair(P=9)
    acc = metrics.QualityAccumulator()
    for a in range(0, 9, 4):
        acc.update(ref[a:a + 4], test[a:a + 4])
    assert acc.result()["psnr_db"] == pytest.approx(metrics.evaluate(ref, test)["psnr_db"], abs=1e-12)
    assert acc.per_probe_psnr.shape == (9,)


def test_exact_match_is_infinite_and_tonemap_inverts():
    ref, _ = _pair(P=2)
    assert metrics.evaluate(ref, ref)["psnr_db"] == float("inf")
    v = np.array([0.0, 0.01, 1.0, 50.0, 3000.0])
    np.testing.assert_allclose(metrics.inverse_tonemap(metrics.tonemap(v)), v, rtol=1e-5)
    np.testing.assert_allclose(metrics.tonemap(v), naive.naive_tonemap(v), rtol=1e-12)


def test_shape_mismatch_is_an_error():
    ref, test = _pair()
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.evaluate(ref, test[:2])
