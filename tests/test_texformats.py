"""Stored texel formats and weights: encode/decode twins with stated precision."""
import numpy as np
import pytest

from probewarp.baker import texformats as tf


def test_rgb9e5_reference_values_and_precision():
    # EXT_texture_shared_exponent: 1.0 -> exponent 16 (biased), mantissa 256
    one = tf.encode(np.array([[1.0, 1.0, 1.0]]), "rgb9e5")[0]
    assert (one >> 27) == 16 and (one & 511) == 256
    v = np.random.default_rng(0).lognormal(0, 2, (2000, 3)).astype(np.float32)
    back = tf.decode(tf.encode(v, "rgb9e5"), "rgb9e5")
    # each channel within half a step of the shared exponent: 2^-9 of the largest channel
    assert np.all(np.abs(back - v) <= v.max(axis=1, keepdims=True) * 2.0 ** -9)
    assert tf.encode(np.array([[0.0, 0.0, 0.0]]), "rgb9e5")[0] & ((1 << 27) - 1) == 0


@pytest.mark.parametrize("fmt,tol", [("rgba32f", 0.0), ("rgba16f", 2.0 ** -11), ("rgba8", 0.5 / 255)])
def test_roundtrip_precision(fmt, tol):
    v = np.random.default_rng(1).random((500, 3)).astype(np.float32)
    back = tf.roundtrip(v, fmt)
    assert np.abs(back - v).max() <= tol * (1.0 if fmt == "rgba8" else max(1.0, float(v.max())))
    stored = tf.encode(v, fmt)
    assert stored.shape[-1] == 4 and stored.nbytes == v.shape[0] * tf.FORMATS[fmt]["bytes_per_texel"]


def test_rgba8_needs_the_tonemapped_domain_and_unknown_format():
    with pytest.raises(ValueError, match="tonemapped"):
        tf.roundtrip(np.zeros((1, 3)), "rgba8", domain="linear")
    with pytest.raises(ValueError, match="unknown texel format"):
        tf.encode(np.zeros((1, 3)), "bc99")


def test_weights_fixed_point():
    w = np.array([[0.0, 1.0, 0.5, 3.0, -1.0, 1.0 / 3]])
    q = tf.encode_weights(w)
    np.testing.assert_array_equal(q[0, :5], [0, 128, 64, 255, 0])
    back = tf.decode_weights(q)
    assert back[0, 1] == 1.0 and abs(back[0, 5] - 1 / 3) <= 0.5 / 128


def test_bc7_blocks_round_trip_smooth_faces():
    """BC7 (1 byte per texel) on smooth [0, 1] faces: within 6/255 on average,
    16 bytes per 4x4 block, and R must be a multiple of 4."""
    from probewarp.baker.cubemap import texel_directions
    d = texel_directions(16)
    v = (0.5 + 0.4 * np.sin(3 * d)).astype(np.float32)[None]
    stored = tf.encode(v, "bc7")
    assert stored.shape == (1, 6, 4, 4, 16) and stored.nbytes == 6 * 16 * 16
    back = tf.decode(stored, "bc7")
    assert back.shape == v.shape
    assert np.abs(back - v).mean() < 6 / 255 and np.abs(back - v).max() < 0.1
    with pytest.raises(ValueError, match="divisible by 4"):
        tf.stored_layout("bc7", 6)
    with pytest.raises(ValueError, match="tonemapped"):
        tf.roundtrip(v, "bc7", domain="linear")
