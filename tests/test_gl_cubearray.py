"""Cube-map arrays on the GPU against the CPU convention (DESIGN-NOTES §1).

A real ``GL_TEXTURE_CUBE_MAP_ARRAY`` (probewarp.runtime.cubearray.CubemapArray) is
sampled by ``shaders/sample_cubearray.cs`` and compared with the plain-numpy
oracle ``naive.naive_sample_cube``; plus the shader loader
(probewarp.runtime.shaders).

Tolerances, measured on Mesa llvmpipe (LLVM 15, GL 4.5 core, 2026-11):

- Bilinear samples of float textures: llvmpipe filters float formats with
  float32 weights, *not* the 8-bit weight fractions of hardware (and of its
  own unorm8 path). The error is float32 rounding of the face coordinate,
  so it grows with R: largest error over 3 x 4,000 random directions, values
  in [0, 4), three seeds: 2.1e-6 (R=8), 2.0e-6 (R=5), 4.5e-6 (R=16), about
  R * 7e-8 of the value range. Within 1.5 texels of the 8 cube corners: 2.8e-6
  (R=8), 5.6e-6 (R=16); exact corners 3.2e-7; exact edges (|x| == |y| ties)
  1.2e-6 (R=8). So no corner or edge outlier: llvmpipe implements GL's
  seamless "average of the three texels" corner rule that baker/cubemap.py
  ``_cube_taps`` and the oracle implement. Tolerance ``R * 2^-21`` of the
  range (>= 4x the worst measurement). Hardware GPUs quantise bilinear
  weights to 8 bits (D3D's minimum): ``2^-7`` of the range there.
- Texel-centre directions: exact (0.0) with unnormalised directions whose
  major component is +-1; 9.5e-7 when the GLSL twin ``pw_texel_direction``
  builds (normalised) directions. Tolerance ``2^-20`` of the range.
- RGB9E5: bit-exact to EXT_texture_shared_exponent's reference encoder; so
  per channel within ``2^-9`` of the texel's largest channel.
- Mip generation: within 1 float16 ulp of the box average of the level above
  (measured up to 0.98 ulp: consistent with Mesa truncating to half, as it
  does for float32 uploads).
- Stored texels uploaded as is (``CubemapArray.upload_stored``) read back as
  ``texformats.decode``: bit-exact for rgba16f, rgba32f, rgb9e5 and bc6h
  (Mesa's BPTC float decoder and imagecodecs' agree bit for bit, 0 of 3,456
  values differ); within 1 float32 ulp for rgba8 and bc7, because Mesa turns
  unorm8 ``q`` into ``q * (1.0f / 255)`` and texformats into ``q / 255``
  (measured: 126 of the 256 codes differ, by exactly 1 ulp). Texel-centre
  samples of those textures equal the read-back exactly.
"""
from __future__ import annotations

import moderngl
import numpy as np
import pytest

from probewarp.format import texformats
from probewarp.baker.cubemap import downsample_box, texel_directions
from probewarp.runtime import context, cubearray
from probewarp.runtime import shaders

from naive import naive_sample_cube

#: Bilinear error bound as a fraction of the texture's value range: llvmpipe
#: (float weights; float32 coordinate rounding, times R) and hardware (8-bit
#: weight fractions).
BILINEAR_REL_TOL_PER_R_LLVMPIPE = 2.0 ** -21
BILINEAR_REL_TOL_HARDWARE = 2.0 ** -7
#: Error bound at texel centres as a fraction of the value range.
TEXEL_CENTRE_REL_TOL = 2.0 ** -20
#: RGB9E5: per-channel error bound as a fraction of the texel's largest channel
#: (half a step of a 9-bit mantissa that is >= 256 after normalisation) ...
RGB9E5_REL_TOL = 2.0 ** -9
#: ... or, where the shared exponent bottoms out (largest channel < 2^-15),
#: half the smallest step, 2^-24.
RGB9E5_ABS_TOL = 2.0 ** -25
#: upload_stored then read() against texformats.decode, in float32 ulps of
#: the decoded value: exact, except unorm8 (q * (1/255.0f) against q / 255).
STORED_READBACK_ULPS = {"rgba16f": 0, "rgba32f": 0, "rgb9e5": 0, "bc6h": 0, "rgba8": 1, "bc7": 1}

VALUE_RANGE = 4.0  # test data is uniform in [0, VALUE_RANGE)


def _bilinear_atol(ctx, R: int) -> float:
    if "llvmpipe" in ctx.info["GL_RENDERER"]:
        return BILINEAR_REL_TOL_PER_R_LLVMPIPE * R * VALUE_RANGE
    return BILINEAR_REL_TOL_HARDWARE * VALUE_RANGE


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

_PROGRAMS: dict = {}


def _sampler(ctx, defines=None):
    key = (id(ctx), tuple(sorted((defines or {}).items())))
    if key not in _PROGRAMS:
        _PROGRAMS[key] = shaders.compute(ctx, "sample_cubearray.cs", defines)
    return _PROGRAMS[key]


def sample_gpu(ctx, tex, queries, defines=None, lod=None, unit=0):
    """queries (n, 4) -> (n, 4) float32 via sample_cubearray.cs (see its header)."""
    q = np.ascontiguousarray(queries, np.float32)
    defines = dict(defines or {})
    if unit:
        defines["CUBE_BINDING"] = unit
    cs = _sampler(ctx, defines)
    qbuf = ctx.buffer(q.tobytes())
    rbuf = ctx.buffer(reserve=q.nbytes)
    try:
        qbuf.bind_to_storage_buffer(0)
        rbuf.bind_to_storage_buffer(1)
        tex.bind(unit)
        cs["u_count"] = len(q)
        if lod is not None:
            cs["u_lod"] = float(lod)
        groups = (len(q) + 63) // 64
        cs.run(groups)
        return np.frombuffer(rbuf.read(), np.float32).reshape(-1, 4).copy()
    finally:
        qbuf.release()
        rbuf.release()


def dir_queries(dirs, layer):
    """(..., 3) directions on one layer -> (n, 4) queries."""
    d = np.asarray(dirs, np.float64).reshape(-1, 3)
    return np.concatenate([d, np.full((len(d), 1), float(layer))], 1)


def texel_centre_queries(R, M):
    """(M*6*R*R, 4): unnormalised texel-centre directions (major component +-1), per layer."""
    d = texel_directions(R, normalize=False)
    return np.concatenate([dir_queries(d, m) for m in range(M)])


def random_faces(rng, M, R, C=4):
    """(M, 6, R, R, C) float16, uniform in [0, VALUE_RANGE)."""
    return rng.uniform(0.0, VALUE_RANGE, (M, 6, R, R, C)).astype(np.float16)


@pytest.fixture
def rng():
    return np.random.default_rng(20261101)


# ---------------------------------------------------------------------------
# sampling against the oracle
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("R", [8, 5, 16])
def test_random_directions_match_oracle(gl, rng, R):
    M, N = 3, 4000
    faces = random_faces(rng, M, R)
    with cubearray.CubemapArray(gl, R, M) as tex:
        tex.upload(0, faces[:1])          # two uploads: zoffset 0 and 6
        tex.upload(1, faces[1:])
        dirs = rng.normal(size=(M, N, 3))
        got = sample_gpu(gl, tex, np.concatenate([dir_queries(dirs[m], m) for m in range(M)]))
    got = got.reshape(M, N, 4)
    ref = np.stack([naive_sample_cube(faces[m], dirs[m]) for m in range(M)])
    err = np.abs(got - ref)
    atol = _bilinear_atol(gl, R)
    assert err.max() <= atol, f"max |GPU - oracle| = {err.max():.3g} > {atol:.3g} (R={R})"


def _corner_and_edge_directions(rng, R):
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    # within 1.5 texels of each corner (the "average of three" region is 0.5 texel)
    near = (corners[:, None, :] * (1.0 - rng.uniform(0.0, 3.0 / R, (8, 300, 3)))).reshape(-1, 3)
    edges = []
    for ax in range(3):
        o1, o2 = [a for a in range(3) if a != ax]
        for s1 in (-1.0, 1.0):
            for s2 in (-1.0, 1.0):
                v = np.zeros((100, 3))
                v[:, ax] = rng.uniform(-1.0, 1.0, 100)
                v[:, o1], v[:, o2] = s1, s2     # |x| == |y| ties: face choice differs, value must not
                edges.append(v)
    return corners, near, np.concatenate(edges)


@pytest.mark.parametrize("R", [8, 5])
def test_corners_and_edges_match_oracle(gl, rng, R):
    M = 2
    faces = random_faces(rng, M, R)
    corners, near, edges = _corner_and_edge_directions(rng, R)
    atol = _bilinear_atol(gl, R)
    with cubearray.CubemapArray(gl, R, M) as tex:
        tex.upload(0, faces)
        for name, d in (("exact corners", corners), ("near corners", near), ("exact edges", edges)):
            got = sample_gpu(gl, tex, np.concatenate([dir_queries(d, m) for m in range(M)]))
            ref = np.concatenate([naive_sample_cube(faces[m], d) for m in range(M)])
            err = np.abs(got - ref).max()
            assert err <= atol, f"{name}: max |GPU - oracle| = {err:.3g} > {atol:.3g}"
    # GL's corner rule, spelled out: (+1, +1, +1) is the mean of the three
    # texels meeting there: +X (t=0, s=0), +Y (t=R-1, s=R-1), +Z (t=0, s=R-1).
    f = faces[0].astype(np.float64)
    three = (f[0, 0, 0] + f[2, R - 1, R - 1] + f[4, 0, R - 1]) / 3.0
    np.testing.assert_allclose(naive_sample_cube(faces[0], [[1.0, 1.0, 1.0]])[0], three, atol=1e-12)
    with cubearray.CubemapArray(gl, R, 1) as tex:
        tex.upload(0, faces[:1])
        g = sample_gpu(gl, tex, dir_queries([[1.0, 1.0, 1.0]], 0))[0]
    assert np.abs(g - three).max() <= atol


@pytest.mark.parametrize("internal_format", ["rgba16f", "rgba32f"])
@pytest.mark.parametrize("R", [8, 5])
def test_texel_centres_are_exact(gl, rng, R, internal_format):
    """Face order and orientation: every texel centre returns that texel."""
    M = 3
    faces = random_faces(rng, M, R)
    atol = TEXEL_CENTRE_REL_TOL * VALUE_RANGE
    with cubearray.CubemapArray(gl, R, M, internal_format=internal_format) as tex:
        tex.upload(0, faces)
        got = sample_gpu(gl, tex, texel_centre_queries(R, M)).reshape(faces.shape)
        # the same through the GLSL twin of texel_directions (QUERY_TEXEL 1)
        f, t, s = np.meshgrid(np.arange(6), np.arange(R), np.arange(R), indexing="ij")
        tq = np.concatenate([np.stack([f.ravel(), s.ravel(), t.ravel(), np.full(f.size, m)], 1)
                             for m in range(M)])
        via_glsl = sample_gpu(gl, tex, tq, {"QUERY_TEXEL": 1}).reshape(faces.shape)
    want = faces.astype(np.float32)
    assert np.abs(got - want).max() <= atol
    assert np.abs(via_glsl - want).max() <= atol
    # The test has teeth: one mirrored face is caught by a wide margin.
    wrong = faces.copy()
    wrong[1, 2] = wrong[1, 2, :, ::-1]
    assert np.abs(got - wrong.astype(np.float32)).max() > 100 * atol


def test_float32_upload_rounds_to_nearest_half(gl, rng):
    R, M = 8, 2
    data = (rng.uniform(-1.0, 1.0, (M, 6, R, R, 4))
            * 10.0 ** rng.integers(-4, 4, (M, 6, R, R, 4))).astype(np.float32)
    data[0, 0, 0, 0] = [1e6, -1e6, 0.0, 1.0]  # clamps to +-65504, not inf
    with cubearray.CubemapArray(gl, R, M, "rgba16f") as tex:
        tex.upload(0, data)
        back = tex.read()
    want = np.clip(data, -65504, 65504).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(back, want)
    with cubearray.CubemapArray(gl, R, M, "rgba32f") as tex:
        tex.upload(0, data)
        np.testing.assert_array_equal(tex.read(), data)


# ---------------------------------------------------------------------------
# RGB9E5
# ---------------------------------------------------------------------------

def rgb9e5_reference(v):
    """EXT_texture_shared_exponent's encoder then decoder: (..., 3) -> (..., 3) float64."""
    N, B, EMAX = 9, 15, 31
    sharedexp_max = (2 ** N - 1) / 2 ** N * 2.0 ** (EMAX - B)
    c = np.clip(np.asarray(v, np.float64), 0.0, sharedexp_max)
    maxc = c.max(-1, keepdims=True)
    exp_p = np.maximum(-B - 1, np.floor(np.log2(np.maximum(maxc, 1e-300)))) + 1 + B
    maxs = np.floor(maxc / 2.0 ** (exp_p - B - N) + 0.5)
    exp_s = np.where(maxs == 2 ** N, exp_p + 1, exp_p)
    return np.floor(c / 2.0 ** (exp_s - B - N) + 0.5) * 2.0 ** (exp_s - B - N)


@pytest.mark.parametrize("C", [3, 4])
def test_rgb9e5_upload(gl, rng, C):
    R, M = 8, 2
    # HDR: per-texel scale over ten decades
    v = (rng.uniform(0.0, 1.0, (M, 6, R, R, C))
         * 10.0 ** rng.uniform(-6.0, 4.5, (M, 6, R, R, 1))).astype(np.float32)
    v[0, 0, 0, 0, :3] = [0.0, 0.0, 0.0]
    v[0, 0, 0, 1, :3] = [7.0e4, 1.0, 0.0]     # above the format's max: clamps
    v[0, 0, 0, 2, :3] = [-1.0, 2.0, 3.0]      # negative: 0
    with cubearray.CubemapArray(gl, R, M, internal_format="rgb9e5") as tex:
        tex.upload(0, v)
        back = tex.read()
        sampled = sample_gpu(gl, tex, texel_centre_queries(R, M)).reshape(back.shape)
    ref = rgb9e5_reference(v[..., :3])
    np.testing.assert_array_equal(back[..., :3], ref)       # the driver packs per the spec
    np.testing.assert_array_equal(back[..., 3], 1.0)
    np.testing.assert_array_equal(sampled, back)
    # ... which is within 2^-9 of each texel's largest channel (unclamped texels)
    vv = v[..., :3].astype(np.float64)
    ok = (vv.max(-1) < 6.5e4) & (vv.min(-1) >= 0)
    err = np.abs(back[..., :3] - vv).max(-1)
    bound = np.maximum(RGB9E5_REL_TOL * vv.max(-1), RGB9E5_ABS_TOL)
    assert (err[ok] <= bound[ok]).all()
    assert err[ok].max() > 0.5 * bound[ok][np.argmax(err[ok])]  # the bound is tight, not vacuous


# ---------------------------------------------------------------------------
# mip levels
# ---------------------------------------------------------------------------

def test_mipmaps(gl, rng):
    R, M, levels = 8, 2, 4
    faces = random_faces(rng, M, R)
    with cubearray.CubemapArray(gl, R, M, levels=levels) as tex:
        tex.upload(0, faces)
        tex.generate_mipmaps()
        prev = faces.astype(np.float64)
        for lvl in range(1, levels):
            back = tex.read(lvl)
            box = downsample_box(prev, 2).astype(np.float64)
            ulp = np.spacing(np.abs(box).astype(np.float16)).astype(np.float64)
            assert (np.abs(back - box) <= ulp).all(), f"level {lvl} not the 2x2 box within 1 ulp"
            r = R >> lvl
            got = sample_gpu(gl, tex, texel_centre_queries(r, M), {"USE_LOD": 1}, lod=lvl)
            np.testing.assert_array_equal(got.reshape(back.shape), back)
            prev = back
        # texture() in a compute shader reads the base level
        got = sample_gpu(gl, tex, texel_centre_queries(R, M))
        np.testing.assert_array_equal(got.reshape(faces.shape), faces.astype(np.float32))
        # explicit upload into a level
        lvl1 = random_faces(rng, 1, R // 2)
        tex.upload(1, lvl1, level=1)
        np.testing.assert_array_equal(tex.read(1)[1:], lvl1.astype(np.float32))


# ---------------------------------------------------------------------------
# stored texel formats, uploaded as is
# ---------------------------------------------------------------------------

def stored_texels(rng, fmt, M, r):
    """(texels (M, 6, r, r, 3) float32, texformats.encode(texels, fmt)): uniform
    [0, 1) for the unit-range formats; else HDR, per-texel scales over six
    decades (a few negatives: the encoders clamp them)."""
    if fmt in texformats.UNIT_RANGE:
        x = rng.uniform(0.0, 1.0, (M, 6, r, r, 3))
    else:
        x = rng.uniform(-0.05, 1.0, (M, 6, r, r, 3)) * 10.0 ** rng.uniform(-3.0, 3.0, (M, 6, r, r, 1))
    x = x.astype(np.float32)
    return x, texformats.encode(x, fmt)


def assert_reads_as_decoded(back, stored, fmt):
    """read() (..., 4) against texformats.decode(stored, fmt) within STORED_READBACK_ULPS."""
    want = texformats.decode(stored, fmt)
    ulps = STORED_READBACK_ULPS[fmt]
    if ulps == 0:
        np.testing.assert_array_equal(back[..., :3], want)
    else:
        err = np.abs(back[..., :3] - want)
        assert (err <= ulps * np.spacing(want)).all(), f"{fmt}: max error {err.max():.3g}"
    np.testing.assert_array_equal(back[..., 3], 1.0)


def test_internal_formats_are_the_texformats():
    assert set(cubearray.INTERNAL_FORMATS) == set(texformats.FORMATS)
    for name, gl_name in cubearray.INTERNAL_FORMATS.items():
        assert texformats.FORMATS[name]["gl"] == gl_name
    assert set(cubearray.COMPRESSED_FORMATS) == set(texformats.BLOCK_FORMATS)
    assert set(STORED_READBACK_ULPS) == set(texformats.FORMATS)


@pytest.mark.parametrize("fmt", sorted(texformats.FORMATS))
def test_upload_stored_reads_back_as_decoded(gl, rng, fmt):
    R, M = 8, 3
    x, stored = stored_texels(rng, fmt, M, R)
    with cubearray.CubemapArray(gl, R, M, internal_format=fmt) as tex:
        tex.upload_stored(0, stored[:1], fmt=fmt)      # two uploads: zoffset 0 and 6
        tex.upload_stored(1, stored[1:])
        back = tex.read()
        sampled = sample_gpu(gl, tex, texel_centre_queries(R, M)).reshape(back.shape)
    assert_reads_as_decoded(back, stored, fmt)
    np.testing.assert_array_equal(sampled, back)        # the sampler decodes the same
    if fmt in ("rgb9e5", "bc6h"):
        assert back.max() > 100.0                       # HDR formats keep HDR


@pytest.mark.parametrize("fmt", sorted(texformats.FORMATS))
def test_upload_stored_level_and_layer_offset(gl, rng, fmt):
    R, M = 8, 3
    _, level0 = stored_texels(rng, fmt, M, R)
    _, level1 = stored_texels(rng, fmt, 2, R // 2)
    with cubearray.CubemapArray(gl, R, M, internal_format=fmt, levels=2) as tex:
        tex.upload_stored(0, level0)
        tex.upload_stored(1, level1, level=1)          # layers 1 and 2 of level 1
        tex.upload_stored(0, level1[:1], level=1)      # then layer 0
        tex.upload_stored(2, level0[:1], level=0)      # overwrite layer 2 of level 0 only
        back0, back1 = tex.read(0), tex.read(1)
    assert back1.shape == (M, 6, R // 2, R // 2, 4)
    assert_reads_as_decoded(back1, np.concatenate([level1[:1], level1]), fmt)
    assert_reads_as_decoded(back0, np.concatenate([level0[:2], level0[:1]]), fmt)


def test_upload_stored_rejects_mismatched_formats(gl, rng):
    R = 8
    x = rng.uniform(0.0, 1.0, (1, 6, R, R, 3)).astype(np.float32)
    with cubearray.CubemapArray(gl, R, 2, internal_format="bc6h", levels=2) as tex:
        # bc7 blocks have bc6h's shape and dtype: only the name tells them apart
        with pytest.raises(ValueError, match="'bc7' but the texture is 'bc6h'"):
            tex.upload_stored(0, texformats.encode(x, "bc7"), fmt="bc7")
        with pytest.raises(ValueError, match=r"bc6h texture at level 0 takes stored texels \(n, 6, 2, 2, 16\) uint8"):
            tex.upload_stored(0, texformats.encode(x, "rgba8"))
        with pytest.raises(ValueError, match=r"level 1 takes stored texels \(n, 6, 1, 1, 16\)"):
            tex.upload_stored(0, texformats.encode(x, "bc6h"), level=1)
        with pytest.raises(ValueError, match="out of"):
            tex.upload_stored(2, texformats.encode(x, "bc6h"))
        with pytest.raises(ValueError, match="level must be"):
            tex.upload_stored(0, texformats.encode(x, "bc6h"), level=2)
        with pytest.raises(ValueError, match=r"upload_stored\(layer_start, texformats.encode"):
            tex.upload(0, x)                                # float texels into a block format
        with pytest.raises(ValueError, match="generate_mipmaps.*upload_stored"):
            tex.generate_mipmaps()
    with cubearray.CubemapArray(gl, R, 1, internal_format="rgba16f") as tex:
        with pytest.raises(ValueError, match=r"float16 \(texformats.stored_layout\), got \(1, 6, 8, 8, 4\) float32"):
            tex.upload_stored(0, texformats.encode(x, "rgba32f"))   # no silent conversion
        with pytest.raises(ValueError, match="'rgba32f' but the texture is 'rgba16f'"):
            tex.upload_stored(0, texformats.encode(x, "rgba32f"), fmt="rgba32f")
    with cubearray.CubemapArray(gl, R, 1, internal_format="rgba8") as tex:
        with pytest.raises(ValueError, match="rgba8 texture takes its stored form"):
            tex.upload(0, x)
    with pytest.raises(ValueError, match="divisible by 4"):
        cubearray.CubemapArray(gl, 6, 1, internal_format="bc7")
    # block formats: only levels of whole 4x4 blocks (16, 8, 4)
    with pytest.raises(ValueError, match=r"levels must be in \[1, 3\] for R=16 \(bc6h\)"):
        cubearray.CubemapArray(gl, 16, 1, internal_format="bc6h", levels=4)
    cubearray.CubemapArray(gl, 16, 1, internal_format="bc6h", levels=3).release()


# ---------------------------------------------------------------------------
# errors, binding, contexts
# ---------------------------------------------------------------------------

def test_validation(gl):
    with pytest.raises(ValueError, match="internal_format"):
        cubearray.CubemapArray(gl, 8, 1, internal_format="bc1")
    with pytest.raises(ValueError, match="levels"):
        cubearray.CubemapArray(gl, 8, 1, levels=5)
    with cubearray.CubemapArray(gl, 8, 2, levels=2) as tex:
        with pytest.raises(ValueError, match=r"\(n, 6, 8, 8"):
            tex.upload(0, np.zeros((1, 6, 4, 4, 4), np.float32))
        with pytest.raises(ValueError, match=r"\(n, 6, 4, 4"):
            tex.upload(0, np.zeros((1, 6, 8, 8, 4), np.float32), level=1)
        with pytest.raises(ValueError, match="out of"):
            tex.upload(1, np.zeros((2, 6, 8, 8, 4), np.float32))
        with pytest.raises(TypeError, match="float16 or float32"):
            tex.upload(0, np.zeros((1, 6, 8, 8, 4), np.int32))
    assert tex.glo == 0
    tex.release()  # idempotent
    with pytest.raises(RuntimeError, match="released"):
        tex.bind(0)


def test_check_gl_error_names_the_call(gl):
    gl.enable_direct(0x1234)  # not a capability: GL_INVALID_ENUM
    with pytest.raises(RuntimeError, match=r"my step failed: GL_INVALID_ENUM"):
        context.check_gl_error("my step")
    context.check_gl_error("nothing pending")  # the flag was drained


def test_bind_unit_and_state_restored(gl, rng):
    from OpenGL import GL
    R = 4
    faces = random_faces(rng, 1, R)
    GL.glActiveTexture(GL.GL_TEXTURE3)
    GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 8)   # a host's setting; moderngl sets its own per write
    with cubearray.CubemapArray(gl, R, 1) as tex:
        tex.upload(0, faces)
        assert int(GL.glGetIntegerv(GL.GL_ACTIVE_TEXTURE)) == GL.GL_TEXTURE3
        assert int(GL.glGetIntegerv(GL.GL_UNPACK_ALIGNMENT)) == 8
        got = sample_gpu(gl, tex, texel_centre_queries(R, 1), unit=5)
    np.testing.assert_array_equal(got.reshape(faces.shape), faces.astype(np.float32))
    assert int(GL.glGetIntegerv(GL.GL_ACTIVE_TEXTURE)) == GL.GL_TEXTURE3
    GL.glActiveTexture(GL.GL_TEXTURE0)
    GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)


def test_context_from_current_wraps_the_session_context(gl, rng):
    R = 4
    faces = random_faces(rng, 1, R)
    with cubearray.CubemapArray(gl, R, 1) as tex:
        tex.upload(0, faces)
        host = context.context_from_current()
        assert host is not gl and host.version_code >= 450
        got = sample_gpu(host, tex, texel_centre_queries(R, 1))   # compiled on the wrapper
        assert host.error == "GL_NO_ERROR"
    np.testing.assert_array_equal(got.reshape(faces.shape), faces.astype(np.float32))
    assert context.context_from_current(ctx=gl) is gl


# ---------------------------------------------------------------------------
# the shader loader
# ---------------------------------------------------------------------------

MAIN_CS = """\
// main.cs: loader test stage
#version 450
#ifndef VALUE
#define VALUE 1.5
#endif
#include "a.glsl"
#include "b.glsl"
layout(local_size_x = 1) in;
layout(std430, binding = 0) writeonly buffer Out { vec4 o; };
void main() { o = vec4(VALUE, A_SCALE, b_twice(1.0), 0.0); }
"""
A_GLSL = """\
// a.glsl: includes b.glsl, which main.cs includes again (emitted once)
#include "b.glsl"
#ifndef A_SCALE
#define A_SCALE 3.0
#endif
"""
B_GLSL = """\
// b.glsl
// (a comment mentioning #include "nothing.glsl" must not trip moderngl)
float b_twice(float x) { return 2.0 * x; }
"""


@pytest.fixture
def shader_dir(tmp_path):
    for name, text in (("main.cs", MAIN_CS), ("a.glsl", A_GLSL), ("b.glsl", B_GLSL)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_loader_includes_once_with_line_table(shader_dir):
    src = shaders.load("main.cs", {"VALUE": 2.0}, root=shader_dir)
    lines = src.splitlines()
    assert lines[0] == "// main.cs: loader test stage"
    assert lines[1] == "#version 450"
    assert lines[2].startswith("// probewarp source strings:")
    assert shaders.source_files(src) == ["main.cs", "a.glsl", "b.glsl"]
    assert lines[3] == "#define VALUE 2.0"
    assert lines[4] == "#line 3 0"
    assert src.count("float b_twice") == 1
    assert "#line 1 1" in lines and "#line 1 2" in lines and "#line 7 0" in lines


def test_loader_errors(shader_dir):
    with pytest.raises(shaders.ShaderError, match=r"no '#ifndef' default.*'VALU'"):
        shaders.load("main.cs", {"VALU": 1}, root=shader_dir)
    with pytest.raises(ValueError, match="identifiers"):
        shaders.load("main.cs", {"1X": 1}, root=shader_dir)
    (shader_dir / "c.glsl").write_text("#version 450\n")
    (shader_dir / "d.cs").write_text('#version 450\n#include "c.glsl"\n')
    with pytest.raises(shaders.ShaderError, match=r"c.glsl:1: #version in an include"):
        shaders.load("d.cs", root=shader_dir)
    (shader_dir / "e.cs").write_text('#version 450\n#include "missing.glsl"\n')
    with pytest.raises(shaders.ShaderError, match=r"'missing.glsl' not found.*included from e.cs"):
        shaders.load("e.cs", root=shader_dir)
    with pytest.raises(shaders.ShaderError, match="no #version"):
        shaders.load("b.glsl", root=shader_dir)


def _run_main(gl, shader_dir, defines):
    cs = shaders.compute(gl, "main.cs", defines, root=shader_dir)
    buf = gl.buffer(reserve=16)
    buf.bind_to_storage_buffer(0)
    cs.run(1)
    out = np.frombuffer(buf.read(), np.float32).copy()
    buf.release()
    cs.release()
    return out


def test_loader_defines_override_defaults(gl, shader_dir):
    np.testing.assert_array_equal(_run_main(gl, shader_dir, None), [1.5, 3.0, 2.0, 0.0])
    np.testing.assert_array_equal(_run_main(gl, shader_dir, {"VALUE": 7, "A_SCALE": 0.25}),
                                  [7.0, 0.25, 2.0, 0.0])


def test_compile_errors_name_file_and_line(gl, shader_dir):
    (shader_dir / "b.glsl").write_text(B_GLSL + "float broken = ;\n")   # line 4 of b.glsl
    with pytest.raises(shaders.ShaderError, match=r"(?s)main\.cs: .*\nb\.glsl:4\(") as info:
        shaders.compute(gl, "main.cs", root=shader_dir)
    assert isinstance(info.value, moderngl.Error)
    (shader_dir / "b.glsl").write_text(B_GLSL)
    # an error after the includes: line numbers of main.cs are restored
    (shader_dir / "main.cs").write_text(MAIN_CS + "int oops = ;\n")    # line 11 of main.cs
    with pytest.raises(shaders.ShaderError, match=r"(?s)main\.cs: .*\nmain\.cs:11\("):
        shaders.compute(gl, "main.cs", root=shader_dir)
    # render programs: the failing stage's file is named
    (shader_dir / "ok.vs").write_text("#version 450\nvoid main() { gl_Position = vec4(0.0); }\n")
    (shader_dir / "bad.fs").write_text('#version 450\n#include "b.glsl"\n'
                                       "out vec4 c;\nvoid main() { c = vec4(x); }\n")
    with pytest.raises(shaders.ShaderError, match=r"(?s)bad\.fs: .*\nbad\.fs:4\("):
        shaders.program(gl, vertex="ok.vs", fragment="bad.fs", root=shader_dir)
    with pytest.raises(shaders.ShaderError, match="no '#ifndef' default"):
        shaders.program(gl, vertex="ok.vs", fragment="bad.fs", defines={"NOPE": 1},
                        root=shader_dir)


def _shipped(*suffixes):
    root = shaders.shader_root()
    return sorted(p.name for p in root.iterdir() if p.name.endswith(suffixes))


def _compile_stage_alone(source: str, stage: str) -> str:
    """Compile one stage without linking (raw GL); returns the info log if it failed."""
    from OpenGL import GL
    kind = {"vs": GL.GL_VERTEX_SHADER, "fs": GL.GL_FRAGMENT_SHADER,
            "gs": GL.GL_GEOMETRY_SHADER, "cs": GL.GL_COMPUTE_SHADER}[stage]
    sh = GL.glCreateShader(kind)
    try:
        GL.glShaderSource(sh, source)
        GL.glCompileShader(sh)
        if GL.glGetShaderiv(sh, GL.GL_COMPILE_STATUS):
            return ""
        log = GL.glGetShaderInfoLog(sh)
        return shaders.translate_log(log.decode() if isinstance(log, bytes) else log,
                                     shaders.source_files(source)) or "failed"
    finally:
        GL.glDeleteShader(sh)


@pytest.mark.parametrize("name", _shipped(".cs", ".vs", ".fs", ".gs"))
def test_shipped_stage_compiles_alone_with_defaults(gl, name):
    log = _compile_stage_alone(shaders.load(name), name.rsplit(".", 1)[1])
    assert not log, f"{name}:\n{log}"


@pytest.mark.parametrize("name", _shipped(".glsl"))
def test_shipped_include_compiles_alone(gl, tmp_path, name):
    root = shaders.shader_root()
    for p in root.iterdir():
        if p.name.endswith((".glsl",)):
            (tmp_path / p.name).write_text(p.read_text())
    text = (root / name).read_text()
    assert text.lstrip().startswith("//"), f"{name} must start with a comment block"
    (tmp_path / "wrap.cs").write_text(f'#version 450\n#include "{name}"\n'
                                      "layout(local_size_x = 1) in;\nvoid main() {}\n")
    log = _compile_stage_alone(shaders.load("wrap.cs", root=tmp_path), "cs")
    assert not log, f"{name}:\n{log}"


def test_shipped_shaders_are_package_data():
    assert "sample_cubearray.cs" in _shipped(".cs")
    assert "common_cubemap.glsl" in _shipped(".glsl")
