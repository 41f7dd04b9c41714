"""The SH baseline in GLSL (shaders/sh_eval.glsl, shaders/sh_decode.cs,
probewarp.baselines.sh_gl) against the CPU baseline (baker/baselines.py).

- The polynomial basis against ``real_sh_basis`` (float64) at random
  directions, the axes and the cube diagonals, orders 0..6.
- Decoding a small grid at positions inside it, on its probes and outside it,
  both blending modes, both domains, against a plain-numpy oracle (trilinear
  blend of the coefficients, ``real_sh_basis`` at the §1 texel centres of
  ``naive.naive_all_directions``, then ``inverse_tonemap`` for 'tonemap');
  and end to end against ``SphericalHarmonics.decode`` of fitted coefficients.
- The generated block of sh_eval.glsl is what :func:`glsl_basis_block`
  prints (``python tests/test_sh_shader.py`` prints it for pasting).

Tolerances, measured on Mesa llvmpipe (LLVM 15, GL 4.5 core, 2026-11):

- Basis: |GLSL - real_sh_basis| relative to the band's bound
  ``sqrt((2l+1)/(4 pi))`` (no real SH of band l exceeds it): largest 2.6e-6
  over 3 x 20,000 random directions, all in band 6 (bands 0..5: <= 8.4e-7;
  the expanded polynomials in z cancel, coefficients up to 20 x the bound).
  Axes, diagonals and near-poles: 1.4e-6. Tolerance 1e-5 of the bound.
  Orthonormality under an R = 64 cube quadrature: off by 1.0e-4 (the
  midpoint rule's own error; 4.0e-4 at R = 32, 2.5e-5 at R = 128).
- Linear decode: |GPU - oracle| relative to the blended coefficients'
  magnitude ``sum_k |c_k|`` of the query (what float32 rounding of the dot
  product scales with): largest 2.6e-7 (3 seeds, R = 5, 12, 16, both grids,
  both modes; the two modes give identical output). Tolerance 2e-6.
- Tonemap decode, compared where the metric looks (``T(v)``, the PSNR
  domain), tonemapped values 0.5 +- 0.2: largest 1.05e-6. Tolerance 1e-5.
  Texels whose tonemapped value is below 0 decode to exactly 0; above 1 they
  saturate (inverse of ``1 - 1e-7``: ~4.5e6 in float64, ~3.8e6 in float32,
  both asserted above 1e6).
- Fitted SphericalHarmonics(order=6) coefficients (fp16, as shipped) at the
  probes against its own decode: 1.3e-7 of sum|c| (linear), 5e-7 in T
  (tonemap).
"""
from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pytest

from probewarp.baselines.sh import SphericalHarmonics, real_sh_basis, sh_count
from probewarp.format.errors import InputError
from probewarp.baker.metrics import inverse_tonemap, tonemap
from probewarp.runtime import shaders
from probewarp.baselines.sh_gl import MAX_SH_ORDER, SHGridDecoderGL

from naive import naive_all_directions

#: Basis error bound, as a fraction of the band's bound sqrt((2l+1)/(4 pi)).
BASIS_REL_TOL = 1.0e-5
#: Linear decode error bound, as a fraction of sum_k |blended c_k| of the query.
LINEAR_REL_TOL = 2.0e-6
#: Tonemap decode error bound in the metric's domain T(v).
TONEMAP_ATOL = 1.0e-5
#: Texels whose tonemapped value lies within this of 0 or 1 are left out of
#: the exact-zero / saturation checks (float32 evaluation may land on either side).
CLIP_MARGIN = 1.0e-4
#: A saturated texel (tonemapped value >= 1) decodes above this.
SATURATED_MIN = 1.0e6


# ---------------------------------------------------------------------------
# the generator of sh_eval.glsl's polynomial block
# ---------------------------------------------------------------------------

def _q_polynomials(L: int) -> dict:
    """Coefficients (ascending in z) of ``Q_lm(z)``: real_sh_basis's normalised
    Legendre recurrence in z, run on polynomials, times sqrt(2) for m > 0."""
    from numpy.polynomial import polynomial as npoly
    out = {}
    qmm = np.array([1.0 / math.sqrt(4.0 * math.pi)])
    for m in range(L + 1):
        if m > 0:
            qmm = qmm * math.sqrt((2 * m + 1) / (2 * m))
        prev2, prev = None, qmm
        for l in range(m, L + 1):
            if l == m:
                q = qmm
            elif l == m + 1:
                q = math.sqrt(2 * m + 3) * npoly.polymulx(qmm)
            else:
                a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
                b = math.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
                q = a * npoly.polysub(npoly.polymulx(prev), b * prev2)
            if l > m:
                prev2, prev = prev, q
            out[(l, m)] = q * (math.sqrt(2.0) if m else 1.0)
    return out


def _literal(v: float) -> str:
    text = "%.9g" % v          # 9 significant digits: round-trips float32
    return text if any(ch in text for ch in ".e") else text + ".0"


def _horner_z2(coeffs, parity: int) -> str:
    """Polynomial of parity ``parity`` (ascending coefficients in z) as Horner in z2."""
    a = [coeffs[j] for j in range(parity, len(coeffs), 2)]
    expr = _literal(a[-1])
    for j in range(len(a) - 2, -1, -1):
        inner = expr if j == len(a) - 2 else f"({expr})"
        expr = f"{inner} * z2 {'-' if a[j] < 0 else '+'} {_literal(abs(a[j]))}"
    if parity:
        expr = f"z * ({expr})" if len(a) > 1 else f"{expr} * z"
    return expr


def glsl_basis_block(max_order: int = MAX_SH_ORDER) -> str:
    """The body of ``pw_sh_basis`` (between BEGIN/END GENERATED in sh_eval.glsl).

    Band l (guarded by ``#if PW_SH_ORDER >= l``) first advances
    ``(c_l, s_l) = (Re, Im) (x + i y)^l``, then writes ``Y[l*l + l] = Q_l0(z)``
    and ``Y[l*l + l -+ m] = Q_lm(z) * (s_m, c_m)``.
    """
    Q = _q_polynomials(max_order)
    ind = "    "
    lines = []
    for l in range(max_order + 1):
        if l > 0:
            lines.append(f"#if PW_SH_ORDER >= {l}")
        if l == 1:
            lines.append(ind + "float c1 = x, s1 = y;")
        elif l >= 2:
            lines.append(ind + f"float c{l} = c{l - 1} * x - s{l - 1} * y, "
                               f"s{l} = c{l - 1} * y + s{l - 1} * x;")
        centre = l * l + l
        for m in range(l + 1):
            e = _horner_z2(Q[(l, m)], (l - m) % 2)
            if m == 0:
                lines.append(ind + f"Y[{centre}] = {e};")
            elif m == l:
                lines.append(ind + f"Y[{centre - m}] = {e} * s{m};")
                lines.append(ind + f"Y[{centre + m}] = {e} * c{m};")
            else:
                lines.append(ind + f"t = {e};")
                lines.append(ind + f"Y[{centre - m}] = t * s{m};")
                lines.append(ind + f"Y[{centre + m}] = t * c{m};")
        if l > 0:
            lines.append("#endif")
    return "\n".join(lines)


def test_generated_block_is_current():
    src = shaders.shader_root().joinpath("sh_eval.glsl").read_text(encoding="utf-8")
    m = re.search(r"// BEGIN GENERATED[^\n]*\n(.*?)\n\s*// END GENERATED", src, re.S)
    assert m, "sh_eval.glsl lost its BEGIN/END GENERATED markers"
    assert m.group(1) == glsl_basis_block(), \
        "sh_eval.glsl's polynomial block differs from glsl_basis_block(): regenerate it"


# ---------------------------------------------------------------------------
# the basis
# ---------------------------------------------------------------------------

_BASIS_STAGE = """#version 450
// test stage: Y[i * PW_SH_COUNT + k] = pw_sh_basis(dirs[i].xyz)[k]
#include "sh_eval.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Dirs { vec4 dirs[]; };
layout(std430, binding = 1) writeonly buffer Out { float values[]; };
uniform uint u_count;
void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= u_count)
        return;
    float Y[PW_SH_COUNT];
    pw_sh_basis(dirs[i].xyz, Y);
    for (int k = 0; k < PW_SH_COUNT; ++k)
        values[i * uint(PW_SH_COUNT) + uint(k)] = Y[k];
}
"""


@pytest.fixture(scope="module")
def basis_root(tmp_path_factory):
    """A shader folder with the test stage and the real sh_eval.glsl."""
    root = tmp_path_factory.mktemp("sh_shaders")
    (root / "sh_basis_test.cs").write_text(_BASIS_STAGE, encoding="utf-8")
    with shaders.shader_root().joinpath("sh_eval.glsl").open("rb") as src, \
            open(root / "sh_eval.glsl", "wb") as dst:
        shutil.copyfileobj(src, dst)
    return root


def basis_gpu(ctx, root, dirs, order):
    """(n, 3) float32 unit directions -> (n, K) float32 pw_sh_basis values."""
    K = sh_count(order)
    d = np.zeros((len(dirs), 4), np.float32)
    d[:, :3] = dirs
    cs = shaders.compute(ctx, "sh_basis_test.cs", {"PW_SH_ORDER": order}, root=root)
    dbuf = ctx.buffer(d.tobytes())
    obuf = ctx.buffer(reserve=len(d) * K * 4)
    try:
        dbuf.bind_to_storage_buffer(0)
        obuf.bind_to_storage_buffer(1)
        cs["u_count"] = len(d)
        cs.run((len(d) + 63) // 64)
        return np.frombuffer(obuf.read(), np.float32).reshape(len(d), K).copy()
    finally:
        dbuf.release()
        obuf.release()
        cs.release()


def _band_bounds(order):
    """(K,) sqrt((2l+1)/(4 pi)) of each function's band: the largest |Y_lm| can be."""
    return np.concatenate([np.full(2 * l + 1, math.sqrt((2 * l + 1) / (4 * math.pi)))
                           for l in range(order + 1)])


def _unit32(d):
    d = np.asarray(d, np.float64)
    return (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("order", [6, 4, 2, 1, 0])
def test_basis_matches_real_sh_basis(gl, basis_root, order):
    rng = np.random.default_rng(20261107 + order)
    special = [[s * (i == a) for i in range(3)] for a in range(3) for s in (1.0, -1.0)]
    special += [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    special += [[1, 1, 0], [0, -1, 1], [1, 0, -1], [1e-4, 0, 1], [0, 1e-4, -1]]
    for name, dirs in (("random", _unit32(rng.normal(size=(20000, 3)))),
                       ("axes and diagonals", _unit32(special))):
        got = basis_gpu(gl, basis_root, dirs, order)
        ref = real_sh_basis(dirs.astype(np.float64), order)
        rel = np.abs(got - ref) / _band_bounds(order)
        worst = np.unravel_index(np.argmax(rel), rel.shape)
        assert rel.max() <= BASIS_REL_TOL, (
            f"order {order}, {name}: |GLSL - real_sh_basis| / band bound = {rel.max():.3g} "
            f"> {BASIS_REL_TOL:g} at direction {dirs[worst[0]]}, index {worst[1]}")


def test_basis_orthonormal_by_quadrature(gl, basis_root):
    """White-furnace style invariant independent of real_sh_basis: the GLSL
    basis is orthonormal under a fine cube quadrature (R = 64)."""
    from probewarp.baker.cubemap import texel_directions, texel_solid_angles
    R = 64
    dirs = _unit32(texel_directions(R).reshape(-1, 3))
    w = texel_solid_angles(R).reshape(-1)
    w = w * (4.0 * math.pi / w.sum())
    Y = basis_gpu(gl, basis_root, dirs, 6).astype(np.float64)
    gram = (Y * w[:, None]).T @ Y
    # the midpoint rule's own error at R = 64 is 1.0e-4 (measured); a
    # constant off by a relative delta moves its diagonal entry by ~2 delta
    assert np.abs(gram - np.eye(49)).max() < 4e-4


# ---------------------------------------------------------------------------
# decoding a grid
# ---------------------------------------------------------------------------

def naive_grid_blend(coeffs, grid_shape, lo, hi, positions):
    """(Q, K, 3) float64 trilinear blends of (P, K, 3) grid coefficients, by
    the rule of sh_decode.cs, written out per query and per corner."""
    shape = np.asarray(grid_shape)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    step = np.where(shape > 1, (hi - lo) / np.maximum(shape - 1, 1), 1.0)
    out = np.zeros((len(positions),) + coeffs.shape[1:])
    for q, x in enumerate(np.asarray(positions, float)):
        u = np.clip((x - lo) / step, 0.0, shape - 1)
        i0 = np.minimum(np.floor(u), np.maximum(shape - 2, 0)).astype(int)
        f = u - i0
        for cx in (0, 1):
            for cy in (0, 1):
                for cz in (0, 1):
                    corner = np.array([cx, cy, cz])
                    g = np.minimum(i0 + corner, shape - 1)
                    w = np.prod(np.where(corner == 1, f, 1.0 - f))
                    out[q] += w * coeffs[(g[0] * shape[1] + g[1]) * shape[2] + g[2]]
    return out


def naive_sh_decode(blended, R, domain):
    """(Q, K, 3) coefficients -> (Q, 6, R, R, 3) float64 radiance and the
    fit-domain values before the inverse mapping."""
    order = int(round(math.sqrt(blended.shape[1]))) - 1
    Y = real_sh_basis(naive_all_directions(R), order)          # (6, R, R, K)
    y = np.einsum("ftsk,qkc->qftsc", Y, blended)
    v = inverse_tonemap(y) if domain == "tonemap" else y
    return v, y


def _grid_positions(shape, lo, hi):
    axes = [np.linspace(lo[a], hi[a], shape[a]) if shape[a] > 1 else np.array([lo[a]])
            for a in range(3)]
    g = np.meshgrid(*axes, indexing="ij")
    return np.stack([a.ravel() for a in g], 1)


def _query_positions(rng, shape, lo, hi):
    """Inside the box, exactly on every probe, and outside the box (each axis)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    span = np.where(hi > lo, hi - lo, 1.0)
    inside = lo + rng.uniform(0.0, 1.0, (16, 3)) * (hi - lo)
    outside = lo + rng.uniform(-0.8, 1.8, (12, 3)) * span
    outside[:3] = [lo - 0.5 * span, hi + 0.3 * span, [lo[0] - span[0], hi[1], lo[2]]]
    return np.concatenate([inside, _grid_positions(shape, lo, hi), outside])


def _random_coeffs(rng, P, K, domain):
    if domain == "linear":
        return rng.normal(0.0, 1.0, (P, K, 3))
    # tonemapped fields around 0.5 +- 0.2, a few percent of texels beyond [0, 1]
    c = rng.normal(0.0, 0.1, (P, K, 3))
    c[:, 0, :] = rng.uniform(0.4, 0.6, (P, 3)) * math.sqrt(4.0 * math.pi)
    return c


def _check_decode(got, coeffs, grid_shape, lo, hi, positions, R, domain, label):
    blended = naive_grid_blend(coeffs, grid_shape, lo, hi, positions)
    ref, y = naive_sh_decode(blended, R, domain)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.isfinite(got).all()
    if domain == "linear":
        scale = np.abs(blended).sum(axis=1)[:, None, None, None, :]      # (Q, 1, 1, 1, 3)
        rel = np.abs(got - ref) / scale
        assert rel.max() <= LINEAR_REL_TOL, (
            f"{label}: |GPU - oracle| / sum|c| = {rel.max():.3g} > {LINEAR_REL_TOL:g} "
            f"(query {np.unravel_index(np.argmax(rel), rel.shape)[0]})")
        return rel.max()
    err = np.abs(tonemap(got.astype(np.float64)) - tonemap(ref))
    assert err.max() <= TONEMAP_ATOL, (
        f"{label}: |T(GPU) - T(oracle)| = {err.max():.3g} > {TONEMAP_ATOL:g}")
    low, high = y < -CLIP_MARGIN, y > 1.0 + CLIP_MARGIN
    assert low.any() and high.any() and (~low & ~high).mean() > 0.9   # the data covers all three
    assert (got[low] == 0.0).all(), f"{label}: negative tonemapped values must decode to 0"
    assert (got[high] > SATURATED_MIN).all(), f"{label}: values >= 1 must saturate"
    return err.max()


GRIDS = {
    "3x2x4": ((3, 2, 4), (-1.0, 0.5, 2.0), (2.0, 1.5, 5.0)),
    "3x1x2": ((3, 1, 2), (0.0, 4.0, -1.0), (1.0, 4.0, 1.0)),     # one-point y axis
}


@pytest.mark.parametrize("gather_per_texel", [True, False], ids=["per-texel", "per-group"])
@pytest.mark.parametrize("domain", ["linear", "tonemap"])
@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_decode_matches_oracle(gl, grid, domain, gather_per_texel):
    grid_shape, lo, hi = GRIDS[grid]
    rng = np.random.default_rng(20261108 + 10 * sorted(GRIDS).index(grid)
                                + (domain == "tonemap"))
    P, K = int(np.prod(grid_shape)), 49
    coeffs = _random_coeffs(rng, P, K, domain)
    positions = _query_positions(rng, grid_shape, lo, hi)
    with SHGridDecoderGL(gl, coeffs, grid_shape, lo, hi, domain, gather_per_texel) as dec:
        assert dec.order == 6 and dec.n_coefficients == 49
        for R in (5, 12):     # partial work groups (8 x 8): 1 and 2 x 2 groups a face
            got = dec.decode(positions, R)
            _check_decode(got, coeffs, grid_shape, lo, hi, positions, R, domain,
                          f"{grid} {domain} per_texel={gather_per_texel} R={R}")


@pytest.mark.parametrize("gather_per_texel", [True, False], ids=["per-texel", "per-group"])
def test_modes_agree_and_buffer_dispatch(gl, gather_per_texel):
    """dispatch() with a positions Buffer; the lower orders; probes reproduce themselves."""
    grid_shape, lo, hi = GRIDS["3x2x4"]
    rng = np.random.default_rng(5)
    R = 6
    pos = _grid_positions(grid_shape, lo, hi)
    for order in (2, 4):
        K = sh_count(order)
        coeffs = rng.normal(size=(24, K, 3))
        q = np.zeros((len(pos), 4), np.float32)
        q[:, :3] = pos
        buf = gl.buffer(q.tobytes())
        try:
            with SHGridDecoderGL(gl, coeffs, grid_shape, lo, hi, "linear", gather_per_texel) as dec:
                assert dec.order == order
                tex = dec.dispatch(buf, R)
                assert (tex.resolution, tex.layers, tex.internal_format) == (R, len(pos), "rgba32f")
                got = tex.read()
        finally:
            buf.release()
        assert (got[..., 3] == 1.0).all()
        _check_decode(got[..., :3], coeffs, grid_shape, lo, hi, pos, R, "linear",
                      f"order {order} via buffer")


@pytest.mark.parametrize("domain", ["linear", "tonemap"])
def test_fitted_baseline_evaluates_identically(gl, domain):
    """Coefficients fitted by SphericalHarmonics(order=6): the GPU at the
    probe positions reproduces SphericalHarmonics.decode of the shipped
    (fp16) coefficients."""
    rng = np.random.default_rng(11)
    grid_shape, lo, hi = GRIDS["3x2x4"]
    R = 8
    faces = rng.gamma(2.0, 0.5, (24, 6, R, R, 3)).astype(np.float32)
    sh = SphericalHarmonics(order=6, domain=domain).fit(faces)
    coeffs = sh.encode(faces)                    # (24, 49, 3) float16, what ships
    ref = sh.decode(coeffs)
    with SHGridDecoderGL(gl, coeffs, grid_shape, lo, hi, domain) as dec:
        got = dec.decode(_grid_positions(grid_shape, lo, hi), R)
    if domain == "linear":
        scale = np.abs(coeffs.astype(np.float64)).sum(axis=1)[:, None, None, None, :]
        assert (np.abs(got - ref) / scale).max() <= LINEAR_REL_TOL
    else:
        assert np.abs(tonemap(got.astype(np.float64)) - tonemap(ref.astype(np.float64))).max() \
            <= TONEMAP_ATOL


def test_decoder_rejects_bad_input(gl):
    with pytest.raises(InputError):
        SHGridDecoderGL(gl, np.zeros((24, 50, 3)), (3, 2, 4), (0, 0, 0), (1, 1, 1), "linear")
    with pytest.raises(InputError):
        SHGridDecoderGL(gl, np.zeros((24, 64, 3)), (3, 2, 4), (0, 0, 0), (1, 1, 1), "linear")
    with pytest.raises(InputError):
        SHGridDecoderGL(gl, np.zeros((23, 49, 3)), (3, 2, 4), (0, 0, 0), (1, 1, 1), "linear")
    with pytest.raises(ValueError):
        SHGridDecoderGL(gl, np.zeros((24, 49, 3)), (3, 2, 4), (0, 0, 0), (1, 1, 1), "log")
    with SHGridDecoderGL(gl, np.zeros((1, 9, 3)), (1, 1, 1), (0, 0, 0), (0, 0, 0), "linear") as dec:
        assert dec.decode(np.zeros((0, 3)), 4).shape == (0, 6, 4, 4, 3)
        with pytest.raises(ValueError):
            dec.dispatch(np.zeros((dec.max_queries + 1, 3)), 4)


if __name__ == "__main__":
    print(glsl_basis_block())
