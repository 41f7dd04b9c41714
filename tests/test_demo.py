"""The flythrough demo (probewarp.demo): objects lit by the decoded field, headless
and in a real window, against plain-numpy oracles and the CPU reference decoder.

One small built-in capture (8 x 3 x 8 probes at R = 8) baked in pages of 64
probes (several pages to stream and cross) serves the module.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from probewarp.baker.metrics import tonemap
from probewarp.format.errors import InputError

from tolerances import PARITY_TOL

#: Mirror pixels: GL (float32 rays, sphere hit, reflection) against float64
#: numpy. Off grazing angles the reflected direction agrees to ~1e-6 rad;
#: the decoded radiance then agrees like a cubemap decode (PARITY_TOL), plus
#: the rays' rounding through the prototypes' bilinear slopes (measured
#: 1.1e-5 in T at R = 8; the cubemap path instead of the per-pixel decode: 0.08).
MIRROR_TOL = 1e-4
#: Pixels whose normal faces the camera at least this much (cos): at grazing
#: incidence the reflected direction is ill-conditioned in the hit point.
MIRROR_MIN_COS = 0.3


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    from probewarp.baker.pipeline import bake_probeset
    from probewarp.capture.builtin import builtin_probes
    from probewarp.capture.scene import Scene
    d = tmp_path_factory.mktemp("demo")
    probes = builtin_probes((8, 3, 8), 8, cache=d / "probes.npz", supersample=2)
    bake_probeset(probes, d / "probes.pwa", n_prototypes=8, n_taps=3, page_probes=64, n_iter=2, seed=0,
                  validate=False)
    scene = Scene.builtin(seed=0)
    return {"dir": d, "probes": probes, "archive": d / "probes.pwa", "scene": scene,
            "lo": np.asarray(probes.lo), "hi": np.asarray(probes.hi)}


class _Unbind:
    """Released last: binds the default framebuffer again, so that no released
    framebuffer stays moderngl's bound one."""

    def __init__(self, ctx):
        self.ctx = ctx

    def release(self):
        self.ctx.detect_framebuffer(0).use()


def _float_target(ctx, W, H):
    tex = ctx.texture((W, H), 4, dtype="f4")
    depth = ctx.depth_renderbuffer((W, H))
    return _Unbind(ctx), ctx.framebuffer([tex], depth), tex, depth


# ---------------------------------------------------------------------------
# camera maths and the path (numpy)
# ---------------------------------------------------------------------------

def test_pixel_rays_and_projection_agree():
    """A point on a pixel's ray projects to that pixel's centre."""
    from probewarp.demo.camera import Camera, pixel_rays
    cam = Camera.look_at([1.0, 2.0, 3.0], [4.0, 1.5, -2.0], fov_y=50.0)
    W, H = 40, 24
    d = pixel_rays(cam, W, H)
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-12)
    p = cam.position + 3.7 * d
    clip = np.einsum("ij,hwj->hwi", cam.view_projection(W / H), np.concatenate([p, np.ones((H, W, 1))], -1))
    ndc = clip[..., :2] / clip[..., 3:]
    ix = (ndc[..., 0] + 1) / 2 * W - 0.5
    iy = (ndc[..., 1] + 1) / 2 * H - 0.5
    np.testing.assert_allclose(ix, np.arange(W)[None, :].repeat(H, 0), atol=1e-9)
    np.testing.assert_allclose(iy, np.arange(H)[:, None].repeat(W, 1), atol=1e-9)
    # the camera looks along -z of its frame, right-handed
    np.testing.assert_allclose(np.cross(cam.right, cam.up), -cam.forward, atol=1e-12)


def test_default_path_crosses_pages_and_leaves_the_grid_once(baked):
    from probewarp.demo.camera import default_path
    from probewarp.format.archive import ArchiveReader
    lo, hi = baked["lo"], baked["hi"]
    path = default_path(lo, hi, 48)
    inside = np.all((path.positions >= lo - 1e-9) & (path.positions <= hi + 1e-9), axis=1)
    assert inside[0] and not inside[-1]
    runs = np.flatnonzero(np.diff(inside.astype(int)) != 0)
    assert runs.size == 1, "the path leaves the grid exactly once (and does not come back)"
    with ArchiveReader(baked["archive"]) as ar:
        t = ar.table
        assert ar.n_pages >= 3
        page_lo, page_hi = t["lo"].astype(float), t["hi"].astype(float)
    # bricks the path passes through, in order: at least two distinct pages
    owner = [int(np.argmin(np.linalg.norm(np.maximum(0, np.maximum(page_lo - x, x - page_hi)), axis=1)))
             for x in path.positions[inside]]
    assert len(set(owner)) >= 2


def test_path_file_round_trip_and_errors(tmp_path):
    from probewarp.demo.camera import default_path, load_path
    p = default_path([0, 0, 0], [4, 2, 4], 10)
    f = tmp_path / "path.json"
    f.write_text(json.dumps(p.to_json()))
    q = load_path(f)
    np.testing.assert_allclose(q.positions, p.positions, atol=1e-12)
    np.testing.assert_allclose(q.targets, p.targets, atol=1e-12)
    for doc, field in (({"keys": [{"position": [0, 0, 0], "target": [1, 0, 0]}]}, "keys"),
                       ({"keys": [{"position": [0, 0], "target": [1, 0, 0]}] * 2}, "keys[0].position"),
                       ({"keys": [{"position": [0, 0, float("nan")], "target": [1, 0, 0]}] * 2},
                        "keys[0].position"),
                       ({"keys": [{"position": [0, 0, 0], "target": [1, 0, 0]}] * 2, "frames": 0}, "frames")):
        f.write_text(json.dumps(doc))
        with pytest.raises(InputError, match=rf"{f.name}.*{field.replace('[', '.').replace(']', '.')}"):
            load_path(f)
    f.write_text("{not json")
    with pytest.raises(InputError, match="path.json"):
        load_path(f)


def test_popping_metric_oracle():
    """pop = RMS of the change beyond the truth's change: 0 for a constant
    offset, the jump for a jump."""
    from probewarp.demo.headless import _popping
    rng = np.random.default_rng(0)
    g0, g1 = rng.random((6, 5, 3)), rng.random((6, 5, 3))
    mask = np.ones((6, 5), bool)
    assert _popping(g0 + 0.1, g1 + 0.1, g0, g1, mask) == pytest.approx(0.0, abs=1e-12)
    jump = np.zeros((6, 5, 3))
    jump[:3] = 0.2
    expect = np.sqrt(np.mean(np.sum(jump ** 2, axis=-1) / 3))
    assert _popping(g0, g1 + jump, g0, g1, mask) == pytest.approx(expect, rel=1e-12)
    mask[:3] = False
    assert _popping(g0, g1 + jump, g0, g1, mask) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------
# lighting sources and the prefilter
# ---------------------------------------------------------------------------

def test_baseline_sources_against_oracle(baked):
    from probewarp.baker.cubemap import texel_directions
    from probewarp.baselines.sh import SphericalHarmonics, real_sh_basis
    from probewarp.demo.sources import NearestProbe, SHTrilinear
    probes = baked["probes"]
    pos = np.asarray(probes.positions, np.float64)
    faces = np.asarray(probes.faces, np.float32)
    near = NearestProbe(probes)
    ids = np.array([0, 17, 100])
    np.testing.assert_array_equal(near.cubemaps(pos[ids] + 0.01), faces[ids])
    sh = SHTrilinear(probes, order=2)
    ref = SphericalHarmonics(order=2).fit(faces[:1])
    c = ref.encode(faces[[17, 18]]).astype(np.float64)        # neighbours along z
    mid = 0.5 * (pos[17] + pos[18])
    Y = real_sh_basis(texel_directions(8).reshape(-1, 3), 2)
    expect = np.maximum(Y @ (0.5 * (c[0] + c[1])), 0).reshape(6, 8, 8, 3)
    np.testing.assert_allclose(sh.cubemaps(mid[None], 8)[0], expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sh.cubemaps(pos[17:18], 8)[0], np.maximum(Y @ c[0], 0).reshape(6, 8, 8, 3),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("exponent", [1.0, 16.0])
def test_prefilter_matches_reference(gl, exponent):
    from probewarp.runtime.cubearray import CubemapArray
    from naive import naive_prefilter_cube as prefilter_reference
    from probewarp.runtime.ibl import Prefilter
    rng = np.random.default_rng(1)
    faces = rng.random((2, 6, 8, 8, 3)).astype(np.float32) * 4
    src = CubemapArray(gl, 8, 2, "rgba32f")
    dst = CubemapArray(gl, 4, 3, "rgba32f")
    pf = Prefilter(gl, exponent)
    try:
        src.upload(0, faces)
        pf.run(src, dst, count=2, first_out=1)
        got = dst.read()[1:3, ..., :3]
    finally:
        for o in (pf, src, dst):
            o.release()
    np.testing.assert_allclose(got, prefilter_reference(faces, 4, exponent), rtol=2e-5, atol=1e-6)
    # a constant environment stays constant (the weights are normalised)
    np.testing.assert_allclose(prefilter_reference(np.ones((6, 8, 8, 1)), 4, exponent), 1.0, atol=1e-12)


# ---------------------------------------------------------------------------
# the renderer
# ---------------------------------------------------------------------------

def test_mirror_sphere_equals_cpu_decoder(gl, baked):
    """With the mirror sphere's centre on a probe, its pixels are the CPU
    reference decoder's radiance at that probe in the reflected directions."""
    from probewarp.baker.decoder import Decoder
    from probewarp.demo.camera import Camera, pixel_rays, ray_sphere, reflect
    from probewarp.demo.flythrough import Flythrough
    probes = baked["probes"]
    target = np.asarray(probes.positions[3 * 8 * 3 + 8 + 4], np.float64)      # an interior probe
    W, H = 96, 64
    ft = Flythrough(gl, baked["archive"], scene=baked["scene"], page_slots=8, uploads_per_frame=None)
    unbind, fbo, tex, depth = _float_target(gl, W, H)
    try:
        cam0 = Camera.look_at([0, 0, 0], [1.0, -0.2, 0.3])
        offset = ft.sphere_centres(cam0)[0] - cam0.position              # mirror, world frame
        cam = Camera.look_at(target - offset, target - offset + cam0.forward)
        np.testing.assert_allclose(ft.sphere_centres(cam)[0], target, atol=1e-9)
        ft.stream(cam, wait=True)
        fbo.use()
        ft.render(cam, (W, H), "decoded")
        img = np.frombuffer(fbo.read(components=4, dtype="f4"), np.float32).reshape(H, W, 4)
    finally:
        for o in (unbind, fbo, tex, depth, ft):
            o.release()
    assert np.all(np.isfinite(img))
    d = pixel_rays(cam, W, H)
    t, hit = ray_sphere(cam.position, d, target, ft.sphere_radius)
    n = (cam.position + np.where(hit, t, 0)[..., None] * d - target) / ft.sphere_radius
    facing = hit & (-np.sum(n * d, axis=-1) > MIRROR_MIN_COS)
    gl_mirror = img[..., 3] == 2.0
    assert facing.sum() > 200
    assert np.all(gl_mirror[facing]), "the GL sphere covers the numpy sphere's pixels"
    assert (gl_mirror & ~hit).sum() <= 0.02 * hit.sum(), "and little else (edge pixels)"
    r = reflect(d[facing], n[facing])
    ref = Decoder(baked["archive"]).radiance(target, r)
    np.testing.assert_allclose(tonemap(img[facing][:, :3]), tonemap(ref), atol=MIRROR_TOL)
    assert MIRROR_TOL >= PARITY_TOL


def test_presenter_views_against_numpy(gl):
    """present.fs: decoded / truth are T(v) of each image, split joins them at
    the middle column (white), error is the heat ramp of gain x |T(a) - T(b)|."""
    from probewarp.demo.flythrough import Presenter
    rng = np.random.default_rng(2)
    W, H = 16, 8
    a = (rng.random((H, W, 4)) * 3).astype(np.float32)
    b = (rng.random((H, W, 4)) * 3).astype(np.float32)
    ta, tb = gl.texture((W, H), 4, a.tobytes(), dtype="f4"), gl.texture((W, H), 4, b.tobytes(), dtype="f4")
    out = gl.texture((W, H), 4)
    fbo = gl.framebuffer([out])
    pres = Presenter(gl, gain=4.0)
    got = {}
    try:
        for view in Presenter.VIEWS:
            fbo.use()
            pres.render(ta, tb, view, (W, H))
            got[view] = np.frombuffer(fbo.read(components=3), np.uint8).reshape(H, W, 3).astype(float) / 255
    finally:
        gl.detect_framebuffer(0).use()
        for o in (pres, fbo, out, ta, tb):
            o.release()
    Ta, Tb = tonemap(a[..., :3]), tonemap(b[..., :3])
    q = 1.0 / 255 + 1e-6                                       # 8-bit rounding
    np.testing.assert_allclose(got["decoded"], Ta, atol=q)
    np.testing.assert_allclose(got["truth"], Tb, atol=q)
    split = np.where(np.arange(W)[None, :, None] < W // 2, Ta, Tb)
    split[:, W // 2] = 1.0
    np.testing.assert_allclose(got["split"], split, atol=q)
    e = np.clip(4.0 * np.linalg.norm(Ta - Tb, axis=-1) / np.sqrt(3), 0, 1)[..., None]
    ramp = np.clip(3 * e - np.array([0.0, 1.0, 2.0]), 0, 1)
    np.testing.assert_allclose(got["error"], ramp, atol=q)


def test_environment_view_samples_the_lighting_cubemap(gl, baked):
    """environment.fs: with a source other than the decoded field, the
    environment view is the source's cubemap at the camera (layer 3) sampled
    in the pixels' directions (numpy: baker.cubemap.sample_cube)."""
    from probewarp.baker.cubemap import sample_cube
    from probewarp.demo.camera import Camera, pixel_rays
    from probewarp.demo.flythrough import Flythrough
    probes = baked["probes"]
    W, H = 48, 32
    ft = Flythrough(gl, baked["archive"], probes=probes, page_slots=8, uploads_per_frame=None)
    unbind, fbo, tex, depth = _float_target(gl, W, H)
    try:
        c = 0.5 * (baked["lo"] + baked["hi"])
        cam = Camera.look_at(c, c + np.array([1.0, 0.3, -0.4]), fov_y=70)
        ft.stream(cam, wait=True)
        fbo.use()
        ft.render(cam, (W, H), "nearest", view="environment")
        img = np.frombuffer(fbo.read(components=4, dtype="f4"), np.float32).reshape(H, W, 4)
        faces = ft.sources["nearest"].cubemaps(ft.lighting_positions(cam))[3]
    finally:
        for o in (unbind, fbo, tex, depth, ft):
            o.release()
    env = img[..., 3] == 1.0
    assert env.mean() > 0.5, "most of the view is environment, the rest the objects"
    expect = sample_cube(faces, pixel_rays(cam, W, H).reshape(-1, 3)).reshape(H, W, 3)
    np.testing.assert_allclose(tonemap(img[env][:, :3]), tonemap(expect[env]), atol=2e-3)


def test_scene_view_sky_matches_numpy_twin(gl, baked):
    """Looking straight up from above the scene only sky is seen: the camera
    view's sky equals Sky.radiance in the pixels' directions."""
    from probewarp.capture.capturer import Capturer
    from probewarp.capture.view import SceneView
    from probewarp.demo.camera import Camera, pixel_rays
    scene = baked["scene"]
    lo, hi = scene.bounds
    top = np.array([0.5 * (lo[0] + hi[0]), hi[1] + 1.0, 0.5 * (lo[2] + hi[2])])
    cam = Camera.look_at(top, top + np.array([0.0, 1.0, 0.05]), fov_y=40)
    W, H = 32, 24
    cap = Capturer(scene, 8, 1, ctx=gl)
    view = SceneView(cap)
    unbind, fbo, tex, depth = _float_target(gl, W, H)
    try:
        fbo.use()
        gl.viewport = (0, 0, W, H)
        fbo.clear(0, 0, 0, 0, depth=1.0)
        view.render(cam, (W, H))
        img = np.frombuffer(fbo.read(components=4, dtype="f4"), np.float32).reshape(H, W, 4)[..., :3]
    finally:
        for o in (unbind, fbo, tex, depth, view, cap):
            o.release()
    expect = cap.sky.radiance(pixel_rays(cam, W, H))
    np.testing.assert_allclose(img, expect, rtol=1e-4, atol=1e-5)


def test_headless_demo_summary_and_frames(gl, baked, tmp_path):
    from PIL import Image
    from probewarp.demo.camera import default_path
    from probewarp.demo.headless import SHEET_COLUMNS, run_headless
    path = default_path(baked["lo"], baked["hi"], 5)
    out = tmp_path / "fly"
    s = run_headless(baked["archive"], out, path=path, scene=baked["scene"], probes=baked["probes"],
                     size=(96, 54), ctx=gl, video=False)
    frames = sorted((out / "frames").glob("*.png"))
    assert len(frames) == 5
    imgs = [np.asarray(Image.open(f)) for f in frames]
    for im in imgs:
        assert im.shape == (54, 96, 3)
        assert im.mean() > 40, "nothing black"
    for a, b in zip(imgs, imgs[1:]):
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0, "frames along the path differ"
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] == len(SHEET_COLUMNS) * 48
    on_disk = json.loads((out / "summary.json").read_text())
    for summary in (s, on_disk):
        assert set(summary["psnr_probe_db"]) == {"decoded", "nearest", "sh2"}
        for k in ("decoded", "nearest", "sh2"):
            assert np.isfinite(summary["psnr_probe_db"][k]) and summary["psnr_probe_db"][k] > 10
            assert np.isfinite(summary["psnr_objects_db"][k])
            assert summary["popping"][k]["mean"] >= 0 and summary["popping"][k]["max"] >= summary["popping"][k]["p95"]
        assert summary["nonfinite_pixels"] == 0
        assert summary["frame_ms"]["median"] > 0 and summary["frame_ms"]["p99"] >= summary["frame_ms"]["median"]
        st = summary["streaming"]
        assert st["uploaded"] >= 2 and st["failed"] == 0 and st["budget_bytes"] > 0
        assert len(summary["per_frame"]) == 5 and "pop_decoded" in summary["per_frame"][1]
    # the popping entries are the metric of consecutive frames
    pops = [f["pop_decoded"] for f in s["per_frame"][1:]]
    assert s["popping"]["decoded"]["mean"] == pytest.approx(float(np.mean(pops)))
    assert (out / "path.json").exists() and not list(tmp_path.glob("*.tmp*"))


def test_headless_without_truth_and_errors(gl, baked, tmp_path):
    from probewarp.demo.camera import default_path
    from probewarp.demo.headless import run_headless
    path = default_path(baked["lo"], baked["hi"], 2)
    s = run_headless(baked["archive"], tmp_path / "a", path=path, size=(32, 18), ctx=gl, video=False)
    assert s["sources"] == ["decoded"] and s["psnr_probe_db"] == {}
    with pytest.raises(ValueError, match="ground truth"):
        run_headless(baked["archive"], tmp_path / "b", path=path, size=(32, 18), ctx=gl, view="error")
    assert not (tmp_path / "b").exists(), "no half-written output"


# ---------------------------------------------------------------------------
# command line and the real window
# ---------------------------------------------------------------------------

def _cli(*args, env=None, timeout=300):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "probewarp.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=e)


def test_cli_demo_bad_input(baked, tmp_path):
    r = _cli("demo", tmp_path / "missing.pwa", "--headless")
    assert r.returncode == 3 and "missing.pwa" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "p.json"
    bad.write_text('{"keys": []}')
    r = _cli("demo", baked["archive"], "--headless", "--path", bad)
    assert r.returncode == 3 and "p.json" in r.stderr and "keys" in r.stderr
    r = _cli("demo", baked["archive"], "--headless", "--view", "error", "--fly-out", tmp_path / "x")
    assert r.returncode == 3 and "--scene" in r.stderr and not (tmp_path / "x").exists()
    env = {k: "" for k in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = _cli("demo", baked["archive"], "--window", env=env)
    assert r.returncode == 3 and "display" in r.stderr


def test_window_screenshot_equals_headless_frame(baked, tmp_path):
    """The real glfw window under Xvfb renders the same frame as headless."""
    if shutil.which("xvfb-run") is None:
        if os.environ.get("PROBEWARP_REQUIRE_GL") == "1":
            pytest.fail("xvfb-run is missing (.ci/run installs Debian's xvfb)")
        pytest.skip("xvfb-run not installed (Debian: xvfb)")
    pytest.importorskip("glfw")
    from PIL import Image
    from probewarp.demo.camera import default_path
    path = tmp_path / "path.json"
    path.write_text(json.dumps(default_path(baked["lo"], baked["hi"], 3).to_json()))
    common = [baked["archive"], "--scene", "builtin", "--path", path, "--frames", 2, "--size", 160, 100]
    r = _cli("demo", *common, "--headless", "--no-video", "--fly-out", tmp_path / "hl")
    assert r.returncode == 0, r.stderr
    shot = tmp_path / "shot.png"
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 640x480x24", sys.executable, "-m", "probewarp.cli.main",
                        "demo", *map(str, common), "--window", "--no-overlay", "--screenshot", str(shot)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    a = np.asarray(Image.open(shot)).astype(int)
    b = np.asarray(Image.open(tmp_path / "hl" / "frames" / "0001.png")).astype(int)
    assert a.shape == b.shape == (100, 160, 3)
    # same GL driver, same passes: identical up to rare 1-step rounding
    assert np.abs(a - b).max() <= 2 and (np.abs(a - b) > 0).mean() < 0.01
    # with the overlay (overlay.fs): text over the top left, the rest untouched
    shot2 = tmp_path / "shot2.png"
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 640x480x24", sys.executable, "-m", "probewarp.cli.main",
                        "demo", *map(str, common), "--window", "--screenshot", str(shot2)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    c = np.asarray(Image.open(shot2)).astype(int)
    assert np.abs(c[:20, :60] - a[:20, :60]).mean() > 5, "the overlay is drawn"
    assert np.abs(c[-16:] - a[-16:]).max() <= 2, "and covers nothing below its lines"


# ---------------------------------------------------------------------------
# what the flythrough found: blends that overshoot the brightest input
# ---------------------------------------------------------------------------

def test_decoded_radiance_is_bounded_by_the_archives_brightest_input(gl, baked, tmp_path):
    """A blend of prototypes can exceed the tonemap of every input texel; T^-1
    would make it radiance no probe had (up to ~4e6, which the diffuse sphere
    integrates into a white blow-out: found by the flythrough on the
    interior). The bake records the brightest input (meta radiance_max) and
    both decoders clip the blend at its tonemap. Prototypes made 30 % hotter
    overshoot surely."""
    import dataclasses
    from probewarp.baker.decoder import Decoder
    from probewarp.format import constants
    from probewarp.format.archive import ArchiveReader, blend_max, write_archive
    from probewarp.runtime.decode import decode_gl
    faces = np.asarray(baked["probes"].faces, np.float32)
    with ArchiveReader(baked["archive"]) as ar:
        meta = dict(ar.meta)
        pages = [ar.page(i) for i in range(ar.n_pages)]
    assert meta["radiance_max"] == pytest.approx(float(faces.max()))
    assert blend_max(meta) == pytest.approx(float(tonemap(np.float64(faces.max()))))
    assert blend_max({}) == constants.TONEMAP_Y_MAX
    hot = [dataclasses.replace(p, prototypes=p.prototypes * 1.3, stored=None) for p in pages]
    for k in ("format_version", "n_pages", "prototype_levels", "hash"):
        meta.pop(k, None)
    write_archive(tmp_path / "hot.pwa", meta, hot)
    rng = np.random.default_rng(3)
    q = baked["lo"] + rng.random((48, 3)) * (baked["hi"] - baked["lo"])
    dec = Decoder(tmp_path / "hot.pwa")
    cpu = dec.decode(q)
    assert np.isfinite(cpu).all() and cpu.max() <= meta["radiance_max"] * (1 + 1e-5)
    dec.y_max = constants.TONEMAP_Y_MAX                    # the old rule
    assert dec.decode(q).max() > 1000 * meta["radiance_max"]
    glv = decode_gl(tmp_path / "hot.pwa", q, ctx=gl)
    assert glv.max() <= meta["radiance_max"] * (1 + 1e-4)
    np.testing.assert_allclose(tonemap(glv), tonemap(cpu), atol=PARITY_TOL * 10)


def test_radiance_max_is_validated_on_reading(baked, tmp_path):
    import struct
    import zlib
    from probewarp.format.archive import HEADER, HEADER_SIZE, ArchiveReader
    raw = bytearray(baked["archive"].read_bytes())
    head = HEADER.unpack(bytes(raw[:HEADER.size]))
    meta_len = head[3]
    meta = json.loads(bytes(raw[HEADER_SIZE:HEADER_SIZE + meta_len]))
    tried = 0
    for bad in (-1.0, "bright", True):
        m = dict(meta, radiance_max=bad)
        mb = json.dumps(m, sort_keys=True).encode()
        if len(mb) != meta_len:
            mb = mb.ljust(meta_len)                        # JSON allows trailing spaces
            if len(mb) != meta_len:
                continue
        out = bytearray(raw)
        out[HEADER_SIZE:HEADER_SIZE + meta_len] = mb
        out[HEADER_SIZE + meta_len:HEADER_SIZE + meta_len + 4] = struct.pack("<I", zlib.crc32(mb))
        f = tmp_path / "bad.pwa"
        f.write_bytes(bytes(out))
        with pytest.raises(InputError, match="radiance_max"):
            ArchiveReader(f)
        tried += 1
    assert tried == 3
