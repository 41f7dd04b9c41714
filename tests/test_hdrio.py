"""HDR image I/O, equirect/cross <-> cube, folder import/export.

Tolerances (stated where used):
* EXR float32: exact; EXR half: ``constants.FP16_REL_TOL`` relative; Radiance
  .hdr (RGBE, 8-bit mantissas): 1 % relative.
* equirect -> cube against an analytic smooth radiance ``f(d)`` sampled at
  the texel centres: the texel value is an area average, so it differs from
  the centre value by a second-order term ~ f'' (2/R)^2 / 24; measured
  3.0e-3 (R=8) and 7.7e-4 (R=16) for the ``f`` below; asserted 5e-3 / 1.5e-3.
* cross <-> cube: exact.
"""
from __future__ import annotations

import numpy as np
import pytest

from probewarp.baker import hdrio, importer, panorama

from probewarp.format import constants
from probewarp.baker.cubemap import texel_directions, texel_weights
from probewarp.baker.hdrio import HdrImageError, read_hdr_image, write_exr, write_hdr
from probewarp.baker.importer import export_exr_folder, import_folder
from probewarp.baker.panorama import (CROSS_CELLS, cross_to_cube, cube_to_cross, cube_to_equirect, detect_layout,
                                      direction_to_equirect, equirect_directions, equirect_to_cube)
from probewarp.baker.probeset import ProbeSet
from probewarp.baker.validation import ProbeSetError


def f_smooth(d):
    """A smooth, direction-dependent, positive RGB radiance with no symmetry."""
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    return np.stack([1 + 0.5 * x + 0.25 * y * z, 2 + 0.3 * y - 0.2 * x * x, 1.5 + 0.4 * z + 0.3 * x * y], -1)


def equirect_of(f, H):
    return f(equirect_directions(H)).astype(np.float32)


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------

def test_exr_roundtrip_float_and_half(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((7, 10, 3)) * 100 + 0.01).astype(np.float32)
    write_exr(tmp_path / "a.exr", img)
    np.testing.assert_array_equal(read_hdr_image(tmp_path / "a.exr"), img)
    write_exr(tmp_path / "h.exr", img, half=True)
    back = read_hdr_image(tmp_path / "h.exr")
    assert back.dtype == np.float32
    assert (np.abs(back - img) / img).max() <= constants.FP16_REL_TOL
    write_exr(tmp_path / "y.exr", img[..., 1])
    np.testing.assert_array_equal(read_hdr_image(tmp_path / "y.exr"), np.repeat(img[..., 1:2], 3, -1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.exr", "h.exr", "y.exr"]


def test_exr_rgba_and_layered_channels(tmp_path):
    import OpenEXR
    img = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    hdr = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    chans = {c: img[..., i].copy() for i, c in enumerate("RGB")}
    chans["A"] = np.ones((2, 3), np.float32)
    with OpenEXR.File(hdr, chans) as f:
        f.write(str(tmp_path / "rgba.exr"))
    np.testing.assert_array_equal(read_hdr_image(tmp_path / "rgba.exr"), img)
    with OpenEXR.File(hdr, {f"beauty.{c}": img[..., i].copy() for i, c in enumerate("RGB")}) as f:
        f.write(str(tmp_path / "layer.exr"))
    np.testing.assert_array_equal(read_hdr_image(tmp_path / "layer.exr"), img)
    with OpenEXR.File(hdr, {"Z": img[..., 0].copy()}) as f:
        f.write(str(tmp_path / "depth.exr"))
    with pytest.raises(HdrImageError, match="depth.exr"):
        read_hdr_image(tmp_path / "depth.exr")


def test_hdr_read_is_rgb_not_bgr(tmp_path):
    import cv2
    img = np.empty((4, 8, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 1.0, 2.0, 4.0  # R, G, B
    cv2.imwrite(str(tmp_path / "cv.hdr"), img[..., ::-1].copy())  # OpenCV wants BGR
    back = read_hdr_image(tmp_path / "cv.hdr")
    np.testing.assert_allclose(back[0, 0], [1.0, 2.0, 4.0], rtol=0.01)
    write_hdr(tmp_path / "ours.hdr", img * 3)
    np.testing.assert_allclose(read_hdr_image(tmp_path / "ours.hdr"), img * 3, rtol=0.01)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_hdr_image(tmp_path / "none.exr")
    for name in ("junk.exr", "junk.hdr", "junk.png"):
        (tmp_path / name).write_bytes(b"\x00garbage" * 10)
        with pytest.raises(HdrImageError) as ei:
            read_hdr_image(tmp_path / name)
        assert name in str(ei.value)


def test_write_exr_half_overflow_writes_nothing(tmp_path):
    img = np.ones((2, 2, 3), np.float32)
    img[1, 1, 1] = 1e5
    with pytest.raises(HdrImageError, match="float16"):
        write_exr(tmp_path / "o.exr", img, half=True)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# equirect convention and resampling
# ---------------------------------------------------------------------------

def test_equirect_convention():
    H = 4
    d = equirect_directions(H)  # (4, 8, 3)
    assert d.shape == (H, 2 * H, 3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1)
    # u = 0.5 is -Z, u = 0.75 is +X, u = 0.25 is -X, u = 0 is +Z; up is +Y
    u, v = direction_to_equirect(np.array([[0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 1, 0], [0, -1, 0.]]))
    np.testing.assert_allclose(u[:3], [0.5, 0.75, 0.25])
    assert u[3] in (0.0, 1.0)
    np.testing.assert_allclose(v, [0.5, 0.5, 0.5, 0.5, 0.0, 1.0])
    assert d[0, 0, 1] > 0.9 and d[-1, 0, 1] < -0.9  # row 0 near the zenith
    # the twins invert each other at every pixel centre
    u, v = direction_to_equirect(equirect_directions(16))
    uu, vv = np.meshgrid((np.arange(32) + 0.5) / 32, (np.arange(16) + 0.5) / 16)
    np.testing.assert_allclose(u, uu, atol=1e-12)
    np.testing.assert_allclose(v, vv, atol=1e-12)


@pytest.mark.parametrize("R,tol", [(8, 5e-3), (16, 1.5e-3)])
@pytest.mark.parametrize("H", [64, 512])
def test_equirect_to_cube_matches_analytic(R, tol, H):
    cube = equirect_to_cube(equirect_of(f_smooth, H), R)
    assert cube.shape == (6, R, R, 3) and cube.dtype == np.float32
    assert np.abs(cube - f_smooth(texel_directions(R))).max() < tol


@pytest.mark.parametrize("d0", [[1, 0, 0], [0, 0, -1], [0, 1, 0], [0, 0, 1], [0.3, -0.5, 0.8]])
def test_equirect_lobe_lands_on_the_right_texel(d0):
    """Orientation: a narrow lobe around d0 in the equirect peaks at the cube texel looking along d0."""
    d0 = np.asarray(d0, float) / np.linalg.norm(d0)
    img = np.exp((equirect_directions(256) @ d0 - 1) / 0.002)[..., None].repeat(3, -1).astype(np.float32)
    R = 16
    cube = equirect_to_cube(img, R)
    f, t, s = np.unravel_index(np.argmax(cube[..., 0]), (6, R, R))
    peak = texel_directions(R)[f, t, s]
    assert np.degrees(np.arccos(np.clip(peak @ d0, -1, 1))) < 6.0  # within a texel (R=16: ~5.6 deg)


def test_constant_images_stay_constant():
    c = equirect_to_cube(np.full((300, 600, 3), 3.5, np.float32), 8)
    np.testing.assert_allclose(c, 3.5, rtol=1e-6)
    e = cube_to_equirect(np.full((6, 8, 8, 3), 3.5, np.float32), 20)
    np.testing.assert_allclose(e, 3.5, rtol=1e-6)


def test_equirect_to_cube_does_not_alias():
    """A fine checkerboard (period 6 px of a 2048-row image) must average out to its mean.

    Point-sampling it without the pre-filter gives errors of ~0.8; with it,
    measured 8e-4.
    """
    H = 2048
    y, x = np.mgrid[0:H, 0:2 * H]
    chk = ((x // 3 + y // 3) % 2).astype(np.float32)[..., None].repeat(3, -1) * 2
    c = equirect_to_cube(chk, 16)
    assert np.abs(c - 1).max() < 0.01


def test_equirect_to_cube_keeps_energy():
    """Solid-angle integral of a small bright sun plus sky: within 1 % (measured 0.2 % at R=16)."""
    H = 512
    d = equirect_directions(H)
    sun = np.array([0.3, 0.8, -0.5])
    sun /= np.linalg.norm(sun)
    img = (np.exp((d @ sun - 1) / 0.0005) * 1000 + 0.1).astype(np.float32)[..., None].repeat(3, -1)
    lat = np.pi * (0.5 - (np.arange(H) + 0.5) / H)
    w = np.cos(lat)[:, None] * np.ones((1, 2 * H))
    e_eq = (img[..., 0] * w).sum() / w.sum()
    cube = equirect_to_cube(img, 16)
    e_cube = (cube[..., 0] * texel_weights(16)).sum()
    assert abs(e_cube / e_eq - 1) < 0.01


def test_cube_to_equirect_matches_analytic_and_round_trips():
    R = 32
    cube = f_smooth(texel_directions(R)).astype(np.float32)
    eq = cube_to_equirect(cube, 32)
    assert eq.shape == (32, 64, 3) and eq.dtype == np.float32
    assert np.abs(eq - f_smooth(equirect_directions(32))).max() < 2e-3  # measured 7e-4
    back = equirect_to_cube(cube_to_equirect(cube, 64), R)
    assert np.abs(back - cube).max() < 2e-3  # measured 7.8e-4


# ---------------------------------------------------------------------------
# horizontal cross
# ---------------------------------------------------------------------------

def test_cross_roundtrip_and_cells():
    R = 5
    rng = np.random.default_rng(0)
    cube = rng.random((6, R, R, 3)).astype(np.float32)
    cross = cube_to_cross(cube)
    assert cross.shape == (3 * R, 4 * R, 3) and cross.dtype == np.float32
    np.testing.assert_array_equal(cross_to_cube(cross), cube)
    # the documented cells, faces as is (no flips)
    np.testing.assert_array_equal(cross[R:2 * R, R:2 * R], cube[4])      # +Z centre
    np.testing.assert_array_equal(cross[0:R, R:2 * R], cube[2])          # +Y above it
    np.testing.assert_array_equal(cross[R:2 * R, 0:R], cube[1])          # -X left
    np.testing.assert_array_equal(cross[R:2 * R, 3 * R:4 * R], cube[5])  # -Z far right
    used = np.zeros((3, 4), bool)
    for r, c in CROSS_CELLS:
        used[r, c] = True
    for r in range(3):
        for c in range(4):
            if not used[r, c]:
                assert not cross[r * R:(r + 1) * R, c * R:(c + 1) * R].any()


def test_cross_interior_edges_are_continuous():
    """Across each of the 7 interior edges of the cross, neighbouring pixels look ~1 texel apart."""
    R = 16
    cross = cube_to_cross(texel_directions(R))
    edges = []
    for (r, c) in [(1, 0), (1, 1), (1, 2)]:  # vertical edges between horizontal neighbours
        edges.append((cross[r * R:(r + 1) * R, (c + 1) * R - 1], cross[r * R:(r + 1) * R, (c + 1) * R]))
    for (r, c) in [(0, 1), (1, 1)]:  # horizontal edges between vertical neighbours
        edges.append((cross[(r + 1) * R - 1, c * R:(c + 1) * R], cross[(r + 1) * R, c * R:(c + 1) * R]))
    for a, b in edges:
        ang = np.arccos(np.clip((a * b).sum(-1), -1, 1))
        assert ang.max() < 1.5 * (2.0 / R)
    # the cross wraps: the right edge of -Z meets the left edge of -X
    a, b = cross[R:2 * R, 4 * R - 1], cross[R:2 * R, 0]
    assert np.arccos(np.clip((a * b).sum(-1), -1, 1)).max() < 1.5 * (2.0 / R)


def test_detect_layout():
    assert detect_layout((64, 128, 3)) == "equirect"
    assert detect_layout((48, 64, 3)) == "cross"
    assert detect_layout((64, 64, 3)) is None
    assert detect_layout((49, 64, 3)) is None


# ---------------------------------------------------------------------------
# folders
# ---------------------------------------------------------------------------

def _write_csv(path, rows, header=True):
    lines = (["name,x,y,z"] if header else []) + rows
    path.write_text("\n".join(lines) + "\n")


def _equirect_folder(tmp_path, n=3, H=64, suffixes=(".exr",)):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rows = []
    for i in range(n):
        img = equirect_of(f_smooth, H) * (i + 1)
        sfx = suffixes[i % len(suffixes)]
        (write_exr if sfx == ".exr" else write_hdr)(folder / f"p{i}{sfx}", img)
        rows.append(f"p{i},{i},{2 * i},{-i - 0.5}")
    return folder, rows


def test_import_equirect_folder(tmp_path):
    folder, rows = _equirect_folder(tmp_path, suffixes=(".exr", ".hdr"))
    _write_csv(tmp_path / "pos.csv", ["# a comment", ""] + rows)
    ps = import_folder(folder, tmp_path / "pos.csv", 8)
    assert ps.n_probes == 3 and ps.resolution == 8 and ps.faces.dtype == np.float32
    assert ps.names == ["p0", "p1", "p2"] and ps.source == str(tmp_path / "pos.csv")
    np.testing.assert_array_equal(ps.positions, np.array([[0, 0, -0.5], [1, 2, -1.5], [2, 4, -2.5]], np.float32))
    ref = f_smooth(texel_directions(8))
    for i in range(3):
        rtol = 0.01 if i == 1 else 0  # p1 went through RGBE (.hdr): ~1 % relative
        assert np.abs(ps.faces[i] - ref * (i + 1)).max() <= 5e-3 * (i + 1) + rtol * np.abs(ref * (i + 1)).max()


def test_import_csv_without_header_and_with_suffixes(tmp_path):
    folder, rows = _equirect_folder(tmp_path, n=2)
    rows = [r.replace("p0,", "p0.exr,") for r in rows]
    _write_csv(tmp_path / "pos.csv", rows, header=False)
    ps = import_folder(folder, tmp_path / "pos.csv", 4, layout="equirect", dtype=np.float16)
    assert ps.names == ["p0.exr", "p1"] and ps.faces.dtype == np.float16


@pytest.mark.parametrize("half", [False, True])
def test_export_import_cross_roundtrip(tmp_path, half):
    rng = np.random.default_rng(3)
    ps = ProbeSet(rng.random((4, 3)) * 10, (rng.random((4, 6, 6, 6, 3)) * 50 + 0.01).astype(np.float32))
    written = export_exr_folder(ps, tmp_path / "out", layout="cross", half=half)
    assert [p.name for p in written] == [f"probe_00000{i}.exr" for i in range(4)] + ["positions.csv"]
    back = import_folder(tmp_path / "out", tmp_path / "out" / "positions.csv", 6)
    np.testing.assert_array_equal(back.positions, ps.positions)
    if half:
        assert (np.abs(back.faces - ps.faces) / ps.faces).max() <= constants.FP16_REL_TOL
    else:
        np.testing.assert_array_equal(back.faces, ps.faces)


def test_export_import_equirect_roundtrip_of_smooth_probes(tmp_path):
    R = 16
    base = f_smooth(texel_directions(R)).astype(np.float32)
    ps = ProbeSet(np.eye(3), np.stack([base, 2 * base, 3 * base]), names=["a", "b", "c"])
    export_exr_folder(ps, tmp_path / "eq", layout="equirect", height=64)
    assert read_hdr_image(tmp_path / "eq" / "a.exr").shape == (64, 128, 3)
    back = import_folder(tmp_path / "eq", tmp_path / "eq" / "positions.csv", R)
    assert back.names == ["a", "b", "c"]
    for i in range(3):  # twice resampled (bilinear on the cube, box back): measured 2.2e-3 * (i + 1)
        assert np.abs(back.faces[i] - ps.faces[i]).max() < 4e-3 * (i + 1)


def test_export_lazy_set_and_fp16_overflow(tmp_path):
    rng = np.random.default_rng(0)
    faces = rng.random((3, 6, 4, 4, 3)).astype(np.float32)
    ProbeSet(np.eye(3), faces).save(tmp_path / "s.zarr", chunk_probes=2)
    lz = ProbeSet.load(tmp_path / "s.zarr")
    export_exr_folder(lz, tmp_path / "out")
    back = import_folder(tmp_path / "out", tmp_path / "out" / "positions.csv", 4)
    np.testing.assert_array_equal(back.faces, faces)
    faces[1, 2, 0, 0, 0] = 1e6
    with pytest.raises(ProbeSetError) as ei:
        export_exr_folder(ProbeSet(np.eye(3), faces), tmp_path / "half", half=True)
    assert ei.value.probe == 1 and ei.value.field == "faces"


# --- every rejected import ----------------------------------------------------

def _expect_import_error(tmp_path, csv_rows, line, field, *, folder=None, header=True, **kw):
    if folder is None:
        folder, _ = _equirect_folder(tmp_path, n=3, H=16)
    _write_csv(tmp_path / "pos.csv", csv_rows, header=header)
    with pytest.raises(ProbeSetError) as ei:
        import_folder(folder, tmp_path / "pos.csv", 4, **kw)
    e = ei.value
    assert e.file == str(tmp_path / "pos.csv") and str(e).startswith(str(tmp_path / "pos.csv"))
    assert e.line == line
    if line is not None:
        assert f"pos.csv:{line}:" in str(e)
    assert e.field == field
    return e


def test_import_missing_image(tmp_path):
    e = _expect_import_error(tmp_path, ["p0,0,0,0", "p1,1,0,0", "nope,2,0,0"], 4, "image")
    assert e.probe == 2 and e.name == "nope" and "nope" in str(e)


def test_import_unreadable_image(tmp_path):
    folder, _ = _equirect_folder(tmp_path, n=2, H=16)
    (folder / "bad.exr").write_bytes(b"garbage" * 20)
    e = _expect_import_error(tmp_path, ["p0,0,0,0", "bad,1,0,0", "p1,2,0,0"], 3, "image", folder=folder)
    assert "bad.exr" in str(e) and e.probe == 1


@pytest.mark.parametrize("row,field", [("p1,1,abc,0", "y"), ("p1,1,2", "row"), ("p1,1,2,3,4", "row"),
                                       ("p1,nan,0,0", "x"), ("p1,0,0,inf", "z"), (",0,0,0", "name")])
def test_import_bad_csv_rows(tmp_path, row, field):
    _expect_import_error(tmp_path, ["p0,0,0,0", row, "p2,2,0,0"], 3, field)


def test_import_duplicate_name_and_same_file_twice(tmp_path):
    folder, _ = _equirect_folder(tmp_path, n=3, H=16)
    e = _expect_import_error(tmp_path, ["p0,0,0,0", "p1,1,0,0", "p0,2,0,0"], 4, "name", folder=folder)
    assert "line 2" in str(e)
    e = _expect_import_error(tmp_path, ["p0,0,0,0", "p1,1,0,0", "p2,1,1,1", "p0.exr,2,0,0"], 5, "image",
                             folder=folder)
    assert "line 2" in str(e)


def test_import_differing_layouts(tmp_path):
    folder, _ = _equirect_folder(tmp_path, n=2, H=16)
    write_exr(folder / "x.exr", cube_to_cross(np.ones((6, 8, 8, 3), np.float32)))
    e = _expect_import_error(tmp_path, ["p0,0,0,0", "p1,1,0,0", "x,2,0,0"], 4, "image", folder=folder)
    assert "x.exr" in str(e) and "p0.exr" in str(e) and "'cross'" in str(e)
    # explicit layout mismatch is named too
    e = _expect_import_error(tmp_path, ["x,2,0,0", "p0,0,0,0", "p1,1,0,0"], 2, "image", folder=folder,
                             layout="equirect")
    assert "x.exr" in str(e)


def test_import_unknown_layout(tmp_path):
    folder, _ = _equirect_folder(tmp_path, n=1, H=16)
    write_exr(folder / "sq.exr", np.ones((10, 10, 3), np.float32))
    e = _expect_import_error(tmp_path, ["p0,0,0,0", "sq,1,0,0"], 3, "image", folder=folder)
    assert "10x10" in str(e)


def test_import_names_not_matching_files(tmp_path):
    folder, _ = _equirect_folder(tmp_path, n=3, H=16)
    e = _expect_import_error(tmp_path, ["p0,0,0,0", "p1,1,0,0"], None, "names", folder=folder)
    assert "p2.exr" in str(e)
    ps = import_folder(folder, tmp_path / "pos.csv", 4, strict=False)
    assert ps.n_probes == 2


def test_import_empty_or_missing_csv(tmp_path):
    folder, _ = _equirect_folder(tmp_path, n=1, H=16)
    _expect_import_error(tmp_path, [], None, None, folder=folder)
    with pytest.raises(FileNotFoundError):
        import_folder(folder, tmp_path / "nothere.csv", 4)
    with pytest.raises(FileNotFoundError):
        import_folder(tmp_path / "nodir", tmp_path / "pos.csv", 4)


def test_import_validation_errors_carry_the_csv_line(tmp_path):
    folder, _ = _equirect_folder(tmp_path, n=3, H=16)
    e = _expect_import_error(tmp_path, ["p0,0,0,0", "p1,1,0,0", "p2,1,0,0"], 4, "positions", folder=folder)
    assert e.probe == 2 and "duplicate of probe 1" in str(e)
    img = equirect_of(f_smooth, 16)
    img[4:12, 8:24, 1] = -4.0
    write_exr(folder / "p1.exr", img)
    e = _expect_import_error(tmp_path, ["p0,0,0,0", "p1,1,0,0", "p2,2,0,0"], 3, "faces", folder=folder)
    assert e.probe == 1 and "negative" in str(e) and "p1.exr" in str(e)
    ps = import_folder(folder, tmp_path / "pos.csv", 4, validate=False)
    assert ps.validate(sanitize=True).negative_values > 0


def test_import_fp16_overflow(tmp_path):
    folder, _ = _equirect_folder(tmp_path, n=1, H=16)
    write_exr(folder / "p0.exr", np.full((16, 32, 3), 1e6, np.float32))
    _expect_import_error(tmp_path, ["p0,0,0,0"], 2, "image", folder=folder, dtype=np.float16)


def test_library_does_not_print(tmp_path, capsys):
    folder, rows = _equirect_folder(tmp_path, n=2, H=16)
    _write_csv(tmp_path / "pos.csv", rows)
    ps = import_folder(folder, tmp_path / "pos.csv", 4)
    export_exr_folder(ps, tmp_path / "o")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_hdrio_module_has_no_print():
    import inspect
    for mod in (hdrio, importer, panorama):
        assert "print(" not in inspect.getsource(mod)
