"""GLSL decoder (common_probewarp.glsl) against the CPU reference decoder.

Tolerances (values compared after the §5 tonemap T, the metric's space, where
1.0 is the whole display range):
- PARITY_TOL = 2e-5 when prototypes are sampled at level 0 (Rp = R): what is
  left is float32 vs float64 warps and the GPU's bilinear weights (measured
  on llvmpipe: < 1e-6);
- MIP_TOL = 0.03 (max) and MIP_MEAN_TOL = 3e-3 (mean) for Rp = 2R at positions inside the grid box and inside the
  prototypes' spheres, where the GPU
  samples the box-filtered mip level at the warped texel centre and the CPU
  averages 2 x 2 warped sub-samples (the warp is not linear across a texel, and a coarse
  texel's bilinear tent is wider than four fine ones; measured 0.021 max). Outside a sphere (near the closest-approach rule) the
  warp shrinks or stretches a texel's footprint on the prototype and the two
  differ more (0.12 measured 4 units from a sphere of radius 1.7): the level
  is chosen for the requested face, not per warp.
"""
import numpy as np
import pytest

from probewarp.baker.decoder import Decoder
from probewarp.baker.metrics import tonemap
from synth import make_archive
from tolerances import PARITY_TOL

MIP_TOL = 0.03
MIP_MEAN_TOL = 3e-3

LO, HI = np.array([-5.0, 0.0, -4.0]), np.array([5.0, 2.0, 4.0])


def query_positions(dec: Decoder, rng, n_random=12):
    """On probes, between probes, on page borders, outside the grid."""
    P = dec.positions
    on = P[rng.choice(len(P), size=min(8, len(P)), replace=False)]
    inside = rng.uniform(LO, HI, size=(n_random, 3))
    # page borders: midpoints of grid neighbours that live on different pages
    page_of = np.repeat(np.arange(len(dec._page_first) - 1), np.diff(dec._page_first))
    pid = np.empty(len(P), int)
    pid[dec._page_ids] = page_of
    d = np.linalg.norm(P[:, None] - P[None], axis=2)
    step = np.min(d[d > 0])
    a, b = np.nonzero((np.abs(d - step) < 1e-6) & (pid[:, None] != pid[None]))
    pick = rng.choice(len(a), size=min(8, len(a)), replace=False) if len(a) else []
    border = (P[a[pick]] + P[b[pick]]) / 2 + rng.normal(scale=0.01, size=(len(pick), 3))
    outside = np.array([[-9.0, 1.0, 0.0], [0.0, 7.0, 0.0], [6.0, -3.0, 5.5], [30.0, 30.0, -30.0]])
    return np.concatenate([on, inside, border.reshape(-1, 3), outside])


def tm_err(a, b):
    return float(np.abs(tonemap(a) - tonemap(b)).max())


@pytest.mark.parametrize("keep,fmt,domain", [
    (None, "rgba16f", "tonemap"),
    (0.55, "rgba16f", "tonemap"),
    (None, "rgb9e5", "linear"),
    (None, "rgba32f", "linear"),
    (0.7, "bc7", "tonemap"),
    (None, "bc6h", "linear"),
])
def test_gl_decode_matches_cpu(gl, tmp_path, keep, fmt, domain):
    from probewarp.runtime.decode import decode_gl
    path, pages, meta = make_archive(tmp_path / "a.pwa", keep=keep, fmt=fmt, domain=domain, seed=3)
    dec = Decoder(path)
    q = query_positions(dec, np.random.default_rng(0))
    cpu = dec.decode(q)
    gpu, cov = decode_gl(path, q, ctx=gl, coverage=True, page_slots=8)
    assert gpu.shape == cpu.shape
    assert tm_err(gpu, cpu) <= PARITY_TOL
    # a sparse grid can leave a position with no probe around it: both give 0, alpha 0
    empty = np.all(cpu.reshape(len(q), -1) == 0, axis=1)
    assert np.all(cov[~empty] == 1.0)


def test_gl_decode_mip_footprint(gl, tmp_path):
    """Rp = 2R: the GPU samples mip level 1 (footprint of an R x R face)."""
    from probewarp.runtime.decode import decode_gl
    # radii large enough that the grid lies inside the spheres (see MIP_TOL)
    path, _, _ = make_archive(tmp_path / "a.pwa", Rp=16, R=8, seed=5, radius_range=(12.0, 40.0))
    dec = Decoder(path)
    q = query_positions(dec, np.random.default_rng(1))
    q = q[np.all((q >= LO) & (q <= HI), axis=1)]   # outside, the warp's footprint is not the face's
    cpu = dec.decode(q, 8)
    gpu = decode_gl(path, q, 8, ctx=gl)
    err = tm_err(gpu, cpu)
    assert err <= MIP_TOL
    assert float(np.abs(tonemap(gpu) - tonemap(cpu)).mean()) <= MIP_MEAN_TOL
    # and it is the mip level that makes it close: level 0 point samples are further off
    cpu16 = dec.decode(q, 16)
    from probewarp.baker.cubemap import downsample_box
    assert tm_err(downsample_box(cpu16, 2), cpu) < MIP_TOL


def test_gl_decode_against_naive_oracle(gl, tmp_path):
    """One position by the plain-numpy DESIGN-NOTES §4 oracle (tests/naive.py),
    independent of the CPU decoder's kernels."""
    from naive import naive_decode_probe
    from probewarp.baker.metrics import inverse_tonemap
    from probewarp.runtime.decode import decode_gl
    path, pages, meta = make_archive(tmp_path / "a.pwa", grid_shape=(2, 2, 2), page_probes=100, M=5, N=3,
                                     Rp=4, seed=9)
    pg = pages[0]
    x = np.array([0.3, 0.7, -1.1])
    dec = Decoder(path)
    ids, w = dec.pw_find_probes(x[None])
    local = {int(p): i for i, p in enumerate(pg.probe_ids)}
    acc = 0
    for pid, wc in zip(ids[0], w[0]):
        i = local[int(pid)]
        acc = acc + wc * naive_decode_probe(x, pg.centres, pg.radii, pg.prototypes, pg.indices[i],
                                            pg.weights[i], 4)
    oracle = inverse_tonemap(acc)
    gpu = decode_gl(path, x[None], ctx=gl)[0]
    assert tm_err(gpu, oracle) <= 1e-4   # oracle in float64 with its own sampler


def test_field_view_matches_cpu_directions(gl, tmp_path):
    """The camera view pass: each pixel equals the CPU decode at the camera
    position in the pixel's direction."""
    from probewarp.runtime.decode import FieldView
    from probewarp.runtime.streamer import Streamer
    path, _, _ = make_archive(tmp_path / "a.pwa", seed=4)
    dec = Decoder(path)
    x = np.array([1.3, 0.8, -0.4])
    w, h, fov = 24, 16, 70.0
    yaw = 0.6
    rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    with Streamer(gl, path, page_slots=8) as s:
        s.update(x, wait=True)
        view = FieldView(s)
        tex = gl.texture((w, h), 4, dtype="f4")
        fbo = gl.framebuffer([tex])
        try:
            fbo.use()
            gl.viewport = (0, 0, w, h)
            view.render(x, rot, fov, (w, h))
            img = np.frombuffer(tex.read(), np.float32).reshape(h, w, 4)
        finally:
            view.release()
            fbo.release()
            tex.release()
            gl.screen.use() if gl.screen is not None else None
    t = np.tan(np.radians(fov) / 2)
    ndc_x = (np.arange(w) + 0.5) / w * 2 - 1
    ndc_y = (np.arange(h) + 0.5) / h * 2 - 1
    yy, xx = np.meshgrid(ndc_y, ndc_x, indexing="ij")
    cam = np.stack([xx * t * w / h, yy * t, -np.ones_like(xx)], -1).reshape(-1, 3)
    dirs = cam @ rot.T
    want = dec.radiance(x, dirs).reshape(h, w, 3)
    assert np.all(img[..., 3] == 1.0)
    assert tm_err(img[..., :3], want) <= PARITY_TOL * 5   # interpolated NDC vs exact pixel centres


def test_code_per_texel_path_matches(gl, tmp_path):
    """decode_cubemap.cs CODE_PER_TEXEL (pw_decode in every texel) against the CPU decoder."""
    from probewarp.runtime.decode import CubemapDecoder
    from probewarp.runtime.cubearray import CubemapArray
    from probewarp.runtime.streamer import Streamer
    path, _, _ = make_archive(tmp_path / "a.pwa", keep=0.8, seed=6)
    dec = Decoder(path)
    q = query_positions(dec, np.random.default_rng(2))[:16]
    with Streamer(gl, path, page_slots=8) as s:
        s.require(q)
        cd = CubemapDecoder(s, code_per_texel=True)
        target = CubemapArray(gl, 8, len(q), "rgba32f")
        try:
            cd.decode_into(target, q)
            got = target.read()[..., :3]
        finally:
            target.release()
            cd.release()
    assert tm_err(got, dec.decode(q)) <= PARITY_TOL


def test_host_compiled_shader_with_pasted_include(gl, tmp_path):
    """The embedding path of the README: a host compiles its own compute shader
    with include_source() pasted after #version, binds the Streamer, calls
    pw_decode per invocation; results equal the CPU decoder."""
    from probewarp.runtime.shaders import include_source
    from probewarp.runtime.streamer import Streamer
    from probewarp.baker.cubemap import texel_directions
    path, _, _ = make_archive(tmp_path / "a.pwa", seed=8)
    dec = Decoder(path)
    x = np.array([-1.7, 1.2, 2.2])
    dirs = texel_directions(4).reshape(-1, 3)
    src = ("#version 450\n" + "{inc}" + """
layout(local_size_x = 1) in;
layout(std430, binding = 0) readonly buffer D { vec4 dirs[]; };
layout(std430, binding = 1) writeonly buffer O { vec4 outv[]; };
uniform vec3 host_x;
void main() { uint i = gl_GlobalInvocationID.x; outv[i] = pw_decode(host_x, dirs[i].xyz, 0.0); }
""")
    with Streamer(gl, path, page_slots=8) as s:
        s.update(x, wait=True)
        prog = gl.compute_shader(src.replace("{inc}", include_source(defines=s.defines)))
        dbuf = gl.buffer(np.concatenate([dirs, np.zeros((len(dirs), 1))], 1).astype(np.float32).tobytes())
        obuf = gl.buffer(reserve=len(dirs) * 16)
        try:
            s.bind(prog)
            prog["host_x"].value = tuple(x)
            dbuf.bind_to_storage_buffer(0)
            obuf.bind_to_storage_buffer(1)
            prog.run(len(dirs))
            got = np.frombuffer(obuf.read(), np.float32).reshape(-1, 4)
        finally:
            for o in (prog, dbuf, obuf):
                o.release()
    want = dec.radiance(x, dirs)
    assert np.all(got[:, 3] == 1.0)
    assert tm_err(got[:, :3], want) <= PARITY_TOL


def test_gl_decodes_a_fitted_bake_with_refit_centres_and_coherent_codes(gl, tmp_path):
    """A real bake of the optimiser (centres line-searched, coherent codes, two
    pages with a halo) decodes on the GL twin as on the CPU reference, on
    probes and between them."""
    from probewarp.baker.pipeline import bake_arrays
    from probewarp.format.grid import Grid
    from probewarp.runtime.decode import decode_gl
    from test_prototypes import _field
    g, faces = _field(R=8, n=5)
    grid = Grid.checked((5, 5, 5), (-1, -1, -1), (1, 1, 1))
    r = bake_arrays(g, faces, tmp_path / "fit.pwa", grid=grid, n_prototypes=12, page_probes=64, n_iter=3,
                    texel_format="rgba16f", coherence=0.3, score=False)
    assert r.n_pages >= 2
    dec = Decoder(r.archive)
    rng = np.random.default_rng(1)
    q = np.concatenate([g[rng.choice(len(g), 6, replace=False)], rng.uniform(-1, 1, (10, 3))])
    cpu = dec.decode(q)
    gpu = decode_gl(r.archive, q, ctx=gl, page_slots=8)
    assert tm_err(gpu, cpu) <= PARITY_TOL
