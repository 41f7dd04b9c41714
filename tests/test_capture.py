"""Probe capture (probewarp.capture.capturer, .geometry, .shadow, .sky, .scene, .town) on llvmpipe.

Oracles are numpy: ray-box intersection through
:func:`probewarp.baker.cubemap.texel_directions` for orientation, the numpy
twin of the sky (``Sky.radiance``) for the sky pass, and the Lambert + ambient
formula on a plane for the lighting.
"""
from __future__ import annotations

import numpy as np
import pytest

from probewarp.baker.cubemap import MAJOR, downsample_box, texel_directions
from probewarp.baker.probeset import ProbeSet
from probewarp.capture.capturer import SHADER_ROOT, Capturer, capture, capture_grid, grid_positions
from probewarp.capture.sky import Sky
from probewarp.capture.scene import Scene, srgb_to_linear

#: Six distinct wall colours, in face order (+X -X +Y -Y +Z -Z).
WALL = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.3, 0.9],
                 [0.7, 0.7, 0.1], [0.1, 0.7, 0.8], [0.6, 0.2, 0.7]], np.float32)
#: The +X wall of the split box, quadrants by (y > 0, z > 0).
QUAD = {(False, False): [1.0, 0.5, 0.0], (False, True): [0.0, 0.4, 1.0],
        (True, False): [0.3, 1.0, 0.3], (True, True): [1.0, 1.0, 1.0]}
#: Float noise of interpolating a constant vertex colour.
EXACT = 1e-5


def _quad(axis, value, u0, u1, v0, v1):
    """Two triangles of the plane coordinate[axis] = value, spanning the other
    two coordinates (in increasing axis order) over [u0, u1] x [v0, v1]."""
    a, b = [k for k in range(3) if k != axis]
    corners = []
    for (u, v) in [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]:
        p = [0.0, 0.0, 0.0]
        p[axis], p[a], p[b] = float(value), u, v
        corners.append(p)
    c = np.array(corners)
    return np.array([c[0], c[1], c[2], c[0], c[2], c[3]])


def box_scene(split=False) -> Scene:
    """The box [-1, 1]^3 seen from inside; wall f has colour WALL[f]. With
    ``split`` the +X wall is four quadrants of QUAD colours."""
    tris, cols = [], []
    for f in range(6):
        axis, sign = f // 2, (1.0 if f % 2 == 0 else -1.0)
        if f == 0 and split:
            for (ypos, zpos), col in QUAD.items():
                y0, y1 = (0.0, 1.0) if ypos else (-1.0, 0.0)
                z0, z1 = (0.0, 1.0) if zpos else (-1.0, 0.0)
                tris.append(_quad(0, 1.0, y0, y1, z0, z1))
                cols.append(np.repeat([col], 6, axis=0))
        else:
            tris.append(_quad(axis, sign, -1.0, 1.0, -1.0, 1.0))
            cols.append(np.repeat(WALL[f][None], 6, axis=0))
    return Scene.from_triangles(np.concatenate(tris), np.concatenate(cols), name="box")


def expected_box(p, R, ss, split=False) -> np.ndarray:
    """Numpy oracle: colour seen through every sub-texel of a probe at p
    inside the box, box-filtered like the capture. (6, R, R, 3) float64."""
    d = texel_directions(R * ss)                          # (6, T, T, 3)
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (np.sign(d) - p) / d                           # exit distance per axis
    t = np.where(np.isfinite(t) & (t > 0), t, np.inf)
    axis = np.argmin(t, axis=-1)
    comp = np.take_along_axis(d, axis[..., None], -1)[..., 0]
    wall = 2 * axis + (comp < 0)
    col = WALL[wall].astype(np.float64)
    if split:
        hit = p + np.min(t, axis=-1)[..., None] * d
        for (ypos, zpos), c in QUAD.items():
            m = (wall == 0) & ((hit[..., 1] > 0) == ypos) & ((hit[..., 2] > 0) == zpos)
            col[m] = c
    return downsample_box(col, ss)


# ------------------------------------------------------------- shaders
@pytest.mark.parametrize("stages,members", [
    (("capture.vs", "capture.fs"), ["in_position", "in_normal", "in_color", "in_uv", "in_layer", "in_probe",
                                    "u_cols", "u_tile_scale", "u_depth", "u_light", "u_sun_dir", "u_ambient_sky"]),
    (("capture_sky.vs", "capture_sky.fs"), ["u_cols", "u_tile"]),
    (("shadow.vs", "shadow.fs"), ["in_position", "u_light_clip"])])
def test_capture_shaders_compile_with_their_defaults(gl, stages, members):
    """Each stage pair links with no defines (each file's #ifndef defaults) and
    keeps the inputs and uniforms capture.py sets: a member the defaults
    compile out would be dropped by the linker and silently ignored."""
    from probewarp.runtime import shaders

    prog = shaders.program(gl, *stages, root=SHADER_ROOT)
    try:
        assert [m for m in members if prog.get(m, None) is None] == []
    finally:
        prog.release()


# --------------------------------------------------------------------- (a)
def test_box_centre_faces_are_wall_colours(gl):
    faces = capture(box_scene(), [[0.0, 0.0, 0.0]], R=8, supersample=2, ctx=gl, lighting="unlit")
    assert faces.shape == (1, 6, 8, 8, 3) and faces.dtype == np.float32
    for f in range(6):
        np.testing.assert_allclose(faces[0, f], np.broadcast_to(WALL[f], (8, 8, 3)), atol=EXACT,
                                   err_msg=f"face {f} (major {MAJOR[f]})")


@pytest.mark.parametrize("p", [(0.37, -0.21, 0.13), (-0.45, 0.3, -0.27)])
def test_box_off_centre_orientation(gl, p):
    """Rows and columns in DESIGN-NOTES §1 order: the split +X wall and the
    wall seams land where the ray-box oracle says (a flipped row or column
    order would move them)."""
    R, ss = 16, 4
    got = capture(box_scene(split=True), [p], R=R, supersample=ss, ctx=gl, lighting="unlit")[0]
    want = expected_box(p, R, ss, split=True)
    err = np.abs(got - want).max(-1)
    # exact but for the rare sub-texel whose centre lies within the
    # rasteriser's fixed-point snapping (1/256 texel here) of a seam
    assert (err > EXACT).mean() < 0.01, np.argwhere(err > EXACT)[:10]
    assert err.max() <= 1.0 / ss**2 + EXACT
    # and the oracle is not blind: a flipped row or column order is far off
    assert np.abs(got[:, ::-1] - want).max() > 0.3
    assert np.abs(got[:, :, ::-1] - want).max() > 0.3


# --------------------------------------------------------------- sky pass
def test_empty_scene_is_the_sky(gl):
    """No geometry: every texel is the numpy sky of its own direction."""
    sky = Sky(sun_elevation_deg=20.0, sun_azimuth_deg=-70.0)
    empty = Scene.from_triangles(np.zeros((0, 3)), np.zeros((0, 3)))
    R, ss = 8, 4
    got = capture(empty, [[1.0, 2.0, 3.0]], R=R, supersample=ss, sky=sky, ctx=gl)[0]
    want = downsample_box(sky.radiance(texel_directions(R * ss)), ss)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    # the sun is in the face and texel the convention says
    f, t, s = np.unravel_index(np.argmax(got.sum(-1)), got.shape[:3])
    d = texel_directions(R)[f, t, s]
    assert np.degrees(np.arccos(d @ sky.sun_direction)) < 90.0 / R * 1.5


# --------------------------------------------------------------- lighting
def test_lit_plane_matches_lambert_and_shadow(gl):
    """Ground plane (albedo 0.5) under a floating slab: the ground seen
    straight down is albedo * (E_sun/pi * sun.y + ambient_sky) in the sun and
    albedo * ambient_sky in the slab's shadow (analytic, no acne)."""
    sky = Sky()
    s = sky.sun_direction
    ground = _quad(1, 0.0, -200.0, 200.0, -200.0, 200.0)
    slab_c = np.array([0.0, 10.0, 0.0])
    slab = _quad(1, 0.0, -4.0, 4.0, -4.0, 4.0) + slab_c
    scene = Scene.from_triangles(np.concatenate([ground, slab]),
                                 np.concatenate([np.full((6, 3), 0.5), np.full((6, 3), 0.5)]))
    shadow_c = slab_c - s * (slab_c[1] / s[1])            # slab's shadow centre on the ground
    sunny = shadow_c + np.array([30.0, 0.0, -30.0])
    probes = np.array([shadow_c + [0, 1.0, 0], sunny + [0, 1.0, 0], slab_c - [0, 5.0, 0]],
                      np.float32)
    got = capture(scene, probes, R=8, supersample=2, sky=sky, ctx=gl)
    amb_sky, amb_ground = sky.ambient
    lit = 0.5 * (np.array(sky.sun_irradiance) / np.pi * s[1] + amb_sky)
    dark = 0.5 * amb_sky
    np.testing.assert_allclose(got[0, 3], np.broadcast_to(dark, (8, 8, 3)), rtol=1e-3)
    np.testing.assert_allclose(got[1, 3], np.broadcast_to(lit, (8, 8, 3)), rtol=1e-3)
    # the slab's underside seen straight up: a downward normal, ambient only
    # (its own top faces the sun; the underside gets the ground bounce)
    # (texels 1..6 of the +Y face: the slab, 5 above, spans |sc|, |tc| < 0.8)
    np.testing.assert_allclose(got[2, 2, 1:7, 1:7], np.broadcast_to(0.5 * amb_ground, (6, 6, 3)),
                               rtol=1e-3)


# --------------------------------------------------------------------- (b)
def test_builtin_grid_capture_plausible(gl):
    scene = Scene.builtin(seed=0)
    lo, hi = Scene.builtin_grid()
    ps = capture_grid(scene, lo, hi, (3, 2, 3), R=8, ctx=gl)
    assert isinstance(ps, ProbeSet)
    assert ps.positions.shape == (18, 3) and ps.faces.shape == (18, 6, 8, 8, 3)
    assert ps.faces.dtype == np.float32 and ps.grid_shape == (3, 2, 3)
    np.testing.assert_array_equal(ps.positions, grid_positions(lo, hi, (3, 2, 3)))
    np.testing.assert_allclose(ps.positions[1], [lo[0], lo[1], (lo[2] + hi[2]) / 2])  # z fastest
    f = ps.faces
    assert np.isfinite(f).all() and f.min() >= 0.0
    assert 0.05 < f.mean() < 20.0, f.mean()
    assert f.max() > 20.0                       # the sun disc is in some texel
    assert f.max() < 1000.0
    # sky visible upward where nothing is overhead (the pergola covers x, z < 0)
    sky = Sky()
    up = downsample_box(sky.radiance(texel_directions(32))[2:3], 4)[0]
    k = int(np.argmax((ps.positions[:, 0] > 0) & (ps.positions[:, 2] > 0)))
    np.testing.assert_allclose(f[k, 2, 3:5, 3:5], up[3:5, 3:5], rtol=2e-3)
    # looking down sees lit or shaded ground: plausible radiance, no sun
    down = f[:, 3]
    assert (down.mean((1, 2, 3)) > 0.05).all() and down.max() < 10.0
    # parallax is real: neighbours along every axis differ
    g = f.reshape(3, 2, 3, 6, 8, 8, 3)
    for a, b in [((0, 0, 0), (1, 0, 0)), ((0, 0, 0), (0, 1, 0)), ((0, 0, 0), (0, 0, 1))]:
        rel = np.abs(g[a] - g[b]).mean() / g[a].mean()
        assert rel > 0.02, (a, b, rel)


def test_builtin_scene_is_reasonable():
    scene = Scene.builtin(seed=3)
    assert 500 < scene.n_triangles < 5000
    lo, hi = Scene.builtin_grid()
    tri = scene.positions.reshape(-1, 3, 3)
    overlap = ((tri.min(1) < hi) & (tri.max(1) > lo)).all(1)
    assert not overlap.any(), "geometry inside the probe-safe box"
    np.testing.assert_allclose(np.linalg.norm(scene.normals, axis=1), 1.0, atol=1e-5)
    assert scene.colors.min() >= 0 and scene.colors.max() <= 1
    assert len(np.unique(scene.colors.round(2), axis=0)) > 20     # a coloured scene
    b = scene.bounds
    assert b[1][1] > 20 and (b[1] - b[0])[0] > 400                # tall and far things


# --------------------------------------------------------------------- (c)
def test_batch_size_independence(gl):
    scene = Scene.builtin(seed=1)
    lo, hi = Scene.builtin_grid()
    pos = grid_positions(lo, hi, (2, 2, 2))[:7]
    with Capturer(scene, R=8, supersample=2, ctx=gl) as cap:
        one = cap.render(pos, batch=1)
        three = cap.render(pos, batch=3)
        many = cap.render(pos)
    for other in (three, many):
        d = np.abs(other - one)
        # identical up to rasterisation rounding of a few edge sub-texels
        assert (d > 1e-4 * (1 + one)).mean() < 0.01
        assert d.mean() < 1e-3 * one.mean()


def test_culling_is_conservative(gl):
    """Per-face chunk culling draws fewer triangles but the same image."""
    scene = Scene.builtin(seed=2)
    lo, hi = Scene.builtin_grid()
    pos = grid_positions(lo, hi, (2, 2, 2))
    with Capturer(scene, R=8, supersample=2, ctx=gl) as cap:
        culled = cap.render(pos)
        n_culled = cap._prepare_draws(pos)
    with Capturer(scene, R=8, supersample=2, ctx=gl, cull=False) as cap:
        full = cap.render(pos)
    np.testing.assert_array_equal(culled, full)
    assert n_culled > 6 * len(pos)            # several runs of chunks per face, not all


def test_draw_commands_merge_runs():
    from probewarp.capture.geometry import draw_commands

    vis = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [0, 1, 1, 1]], bool)
    first, count = np.array([0, 6, 9, 30]), np.array([6, 3, 21, 3])
    cmd = draw_commands(vis, first, count)
    # count, instanceCount, firstIndex, baseVertex, baseInstance
    np.testing.assert_array_equal(cmd, [[9, 1, 0, 0, 0], [3, 1, 30, 0, 0], [27, 1, 6, 0, 2]])


def test_progress_and_batches(gl):
    calls = []
    scene = box_scene()
    pos = np.zeros((5, 3), np.float32)
    out = capture(scene, pos, R=4, supersample=1, ctx=gl, batch=2, lighting="unlit",
                  progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    np.testing.assert_allclose(out, np.broadcast_to(out[0], out.shape), atol=EXACT)


# --------------------------------------------------------------------- (d)
OBJ_FACES = """
v -1 -1 -1
v  1 -1 -1
v  1  1 -1
v -1  1 -1
v -1 -1  1
v  1 -1  1
v  1  1  1
v -1  1  1
usemtl wall0
f 2 3 7
f 2 7 6
usemtl wall1
f 1 5 8
f 1 8 4
usemtl wall2
f 4 8 7
f 4 7 3
usemtl wall3
f 1 2 6
f 1 6 5
usemtl wall4
f 5 6 7
f 5 7 8
usemtl wall5
f 1 4 3
f 1 3 2
"""


def _write_box_obj(tmp_path):
    mtl = "".join(f"newmtl wall{f}\nKd {c[0]:.6f} {c[1]:.6f} {c[2]:.6f}\n" for f, c in enumerate(WALL))
    (tmp_path / "box.mtl").write_text(mtl)
    (tmp_path / "box.obj").write_text("mtllib box.mtl\n" + OBJ_FACES)
    return tmp_path / "box.obj"


def test_obj_material_colours_round_trip(gl, tmp_path):
    scene = Scene.load(_write_box_obj(tmp_path))
    assert scene.n_triangles == 12 and scene.name == "box"
    # every wall colour is there, to trimesh's 8 bits
    got = np.unique(scene.colors.round(4), axis=0)
    assert len(got) == 6
    for c in WALL:
        assert np.abs(got - c).max(1).min() <= 1.0 / 255
    faces = capture(scene, [[0.0, 0.0, 0.0]], R=4, supersample=2, ctx=gl, lighting="unlit")[0]
    for f in range(6):
        np.testing.assert_allclose(faces[f], np.broadcast_to(WALL[f], (4, 4, 3)), atol=1.0 / 255)


def test_glb_transform_and_base_colour(gl, tmp_path):
    import trimesh

    m = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    m.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[0.25, 0.5, 0.75, 1.0]))
    sc = trimesh.Scene()
    sc.add_geometry(m, transform=trimesh.transformations.translation_matrix([10.0, 0.0, 0.0]))
    # (seen from x = 8.5 the cube's near face spans +-27 degrees: the 2 x 2 centre texels)
    sc.export(tmp_path / "cube.glb")
    scene = Scene.load(tmp_path / "cube.glb")
    np.testing.assert_allclose(scene.bounds, [[9.5, -0.5, -0.5], [10.5, 0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(scene.colors, np.broadcast_to([0.25, 0.5, 0.75], scene.colors.shape),
                               atol=1.0 / 255)
    faces = capture(scene, [[8.5, 0.0, 0.0]], R=8, supersample=1, ctx=gl, lighting="unlit")[0]
    np.testing.assert_allclose(faces[0, 3:5, 3:5], np.broadcast_to([0.25, 0.5, 0.75], (2, 2, 3)),
                               atol=1.0 / 255)
    assert np.abs(faces[0, 0, 0] - [0.25, 0.5, 0.75]).max() > 0.3     # sky around it


def test_obj_texture_layer_orientation(gl, tmp_path):
    """map_Kd on the +Z wall: a 2 x 2 image, each quadrant seen where UVs put it
    (image row 0 is the top, v = 1), colours decoded from sRGB."""
    from PIL import Image

    img = np.array([[[255, 0, 0], [0, 255, 0]],        # top row: red, green
                    [[0, 0, 255], [255, 255, 0]]], np.uint8)  # bottom: blue, yellow
    Image.fromarray(img).resize((64, 64), Image.Resampling.NEAREST).save(tmp_path / "t.png")
    (tmp_path / "q.mtl").write_text("newmtl tex\nKd 1 1 1\nmap_Kd t.png\n")
    # the +Z wall at z = 1: u along +x, v along +y
    (tmp_path / "q.obj").write_text(
        "mtllib q.mtl\nv -1 -1 1\nv 1 -1 1\nv 1 1 1\nv -1 1 1\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl tex\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    scene = Scene.load(tmp_path / "q.obj", texture_size=64)
    assert scene.textures.shape == (2, 64, 64, 3)
    faces = capture(scene, [[0.0, 0.0, 0.0]], R=8, supersample=2, ctx=gl, lighting="unlit")[0]
    pz = faces[4]                        # +Z: column s grows along +x, row t along -y
    lin = srgb_to_linear(img / 255.0)
    # texel (t, s): t small = up (+y = v = 1 = image top), s small = -x (u = 0 = image left)
    np.testing.assert_allclose(pz[1, 1], lin[0, 0], atol=2e-3)   # up-left: red
    np.testing.assert_allclose(pz[1, 6], lin[0, 1], atol=2e-3)   # up-right: green
    np.testing.assert_allclose(pz[6, 1], lin[1, 0], atol=2e-3)   # down-left: blue
    np.testing.assert_allclose(pz[6, 6], lin[1, 1], atol=2e-3)   # down-right: yellow


def test_load_normals_file_and_crease(tmp_path):
    """File normals survive node transforms; without them, hard edges on a
    cube and smooth shading on a sphere (crease angle)."""
    import trimesh

    rot = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0])
    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    m = trimesh.Trimesh(tri, [[0, 1, 2]], vertex_normals=[[0, 0, 1], [0, 0, 1], [0.6, 0, 0.8]],
                        process=False)
    sc = trimesh.Scene()
    sc.add_geometry(m, transform=rot)
    sc.export(tmp_path / "tri.glb")
    got = Scene.load(tmp_path / "tri.glb").normals
    np.testing.assert_allclose(got, (rot[:3, :3] @ np.array([[0, 0, 1], [0, 0, 1], [0.6, 0, 0.8]]).T).T,
                               atol=1e-5)
    cube = trimesh.creation.box()
    (tmp_path / "cube.obj").write_text(trimesh.exchange.obj.export_obj(cube, include_normals=False))
    n = Scene.load(tmp_path / "cube.obj").normals
    assert np.allclose(np.abs(n).max(1), 1.0, atol=1e-6)           # axis-aligned: hard edges
    ball = trimesh.creation.icosphere(subdivisions=3)
    (tmp_path / "ball.obj").write_text(trimesh.exchange.obj.export_obj(ball, include_normals=False))
    s = Scene.load(tmp_path / "ball.obj")
    radial = s.positions / np.linalg.norm(s.positions, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", s.normals, radial).min() > 0.995   # smooth


def test_from_triangles_and_validation():
    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]], float)
    s = Scene.from_triangles(tri, [[0.2, 0.4, 0.6]])                 # per triangle
    np.testing.assert_allclose(s.colors, np.tile([0.2, 0.4, 0.6], (3, 1)), atol=1e-7)
    assert abs(abs(s.normals[0, 1]) - 1.0) < 1e-6
    with pytest.raises(ValueError):
        Scene.from_triangles(tri[:2], [0.5, 0.5, 0.5])             # not a multiple of 3
    with pytest.raises(ValueError):
        Scene.from_triangles(tri, [0.5, 0.5, 0.5], layers=np.ones(3, np.int32))   # no layer 1


def test_scene_from_spec(tmp_path):
    assert Scene.from_spec("builtin").n_triangles == Scene.builtin(0).n_triangles
    a, b = Scene.from_spec("builtin:5"), Scene.builtin(5)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert Scene.from_spec(_write_box_obj(tmp_path)).n_triangles == 12
