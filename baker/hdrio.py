"""HDR images in and out, and their conversion to our cubemaps.

Files: OpenEXR through the official ``OpenEXR`` bindings, Radiance ``.hdr``
through OpenCV (``cv2.IMREAD_UNCHANGED``, which hands back BGR: flipped to RGB
here). Layouts of a 360-degree image, both converted to and from the
DESIGN-NOTES §1 cubemap ``(6, R, R, C)``:

**Equirectangular** ``(H, W, C)``, usually ``W = 2 H``. Pixel ``(row y,
column x)`` has ``u = (x + 0.5) / W``, ``v = (y + 0.5) / H`` and looks along::

    lon = 2 pi (u - 0.5),   lat = pi (0.5 - v)
    d   = ( cos(lat) sin(lon),  sin(lat),  -cos(lat) cos(lon) )

Up is +Y (row 0 is the zenith, the last row the nadir); the image centre
(``u = 0.5``) looks along -Z (the OpenGL / glTF camera's forward), ``u = 0.75``
along +X, ``u = 0.25`` along -X, and the left/right edge (``u = 0 = 1``) along
+Z. Longitude grows to the right as seen from inside, so a photographed
panorama maps into a right-handed, Y-up world unmirrored. Twins:
:func:`equirect_directions` (pixel -> direction) and
:func:`direction_to_equirect` (direction -> ``(u, v)``).

**Horizontal cross** ``(3 R, 4 R, C)``, the layout of CubeMapGen, cmft's
``hcross`` and most skybox packs::

    row 0:         [+Y]
    row 1:  [-X]   [+Z]   [+X]   [-Z]
    row 2:         [-Y]

Every cell holds our §1 face *as is*: row ``t`` of the face is image row
``t`` of the cell, column ``s`` is image column ``s``, no flips, no
rotations. The GL face convention was made for this unfolding: all seven
interior edges of the cross join continuously. Unused cells are filled with
0 on export and ignored on import.

Beware: the GL cube convention is left-handed (facing +Z with +Y up, +X is on
the *right*), so as pictures a cross and the equirectangular image of the same
probe are mirror images of each other. A cross made from a panorama by a
left-handed tool (D3D, cmft, CubeMapGen) therefore imports as the mirror
image of importing that panorama directly. Nothing here flips anything.

Notes
-----
* The equirect sampler clamps latitude at the first/last row centre (no
  across-the-pole wrap): it affects only directions within half a pixel of
  a pole, where the polar pre-filter has already averaged each row along
  its parallel.
* Sub-samples of a texel are averaged unweighted (a box in face
  coordinates, like :func:`cubemap.downsample_box`), not by solid angle.
* No vertical cross, strip or octahedral layouts; no sRGB/LDR input; no
  alpha (dropped); EXR layers other than a single R, G, B set (or Y) are not
  read; multi-part EXRs are read from their first part.
"""
from __future__ import annotations

import csv
import errno
import math
import os
import uuid
from pathlib import Path

import numpy as np

from probewarp.baker import config

from probewarp.format import constants
from probewarp.baker.cubemap import MAJOR, U_AXIS, V_AXIS, downsample_box, resample_cube, sample_cube, texel_coords
from probewarp.baker.probeset import ProbeSet, ProbeSetError

#: ``(row, column)`` of each §1 face in the horizontal cross, in units of R.
CROSS_CELLS = ((1, 2), (1, 0), (0, 1), (2, 1), (1, 1), (1, 3))
LAYOUTS = ("equirect", "cross")


class HdrImageError(ValueError):
    """An image file could not be read or written (message names the file)."""


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------

def _pick_exr_rgb(channels: dict, path) -> np.ndarray:
    names = list(channels)
    for prefix in [""] + sorted({n.rsplit(".", 1)[0] + "." for n in names if "." in n}):
        if all(prefix + c in channels for c in "RGB"):
            return np.stack([np.asarray(channels[prefix + c].pixels, np.float32) for c in "RGB"], axis=-1)
    for prefix in [""] + sorted({n.rsplit(".", 1)[0] + "." for n in names if "." in n}):
        if prefix + "Y" in channels:
            y = np.asarray(channels[prefix + "Y"].pixels, np.float32)
            return np.repeat(y[..., None], 3, axis=-1)
    raise HdrImageError(f"{path}: no R, G, B (or Y) channels; the file has {sorted(names)}")


def read_hdr_image(path) -> np.ndarray:
    """Read an ``.exr`` or Radiance ``.hdr`` image.

    Returns
    -------
    img : (H, W, 3) float32
        Linear RGB (a luminance-only EXR is repeated into three channels;
        alpha is dropped).

    Raises
    ------
    FileNotFoundError
    HdrImageError
        Unknown suffix, undecodable file, no colour channels.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(errno.ENOENT, "image not found", str(p))
    sfx = p.suffix.lower()
    if sfx == ".exr":
        import OpenEXR
        try:
            with OpenEXR.File(str(p), separate_channels=True) as f:
                img = _pick_exr_rgb(f.channels(), p)
        except HdrImageError:
            raise
        except Exception as e:  # the bindings raise RuntimeError, sometimes others
            raise HdrImageError(f"{p}: not a readable OpenEXR file ({e})") from e
    elif sfx in (".hdr", ".pic"):
        import cv2
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise HdrImageError(f"{p}: not a readable Radiance .hdr file")
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        elif img.shape[2] >= 3:
            img = img[..., 2::-1]  # OpenCV is BGR
        else:
            raise HdrImageError(f"{p}: unexpected {img.shape[2]}-channel image")
        if img.dtype.kind != "f":
            raise HdrImageError(f"{p}: decoded as {img.dtype}, not floating point (not an HDR file?)")
    else:
        raise HdrImageError(f"{p}: unsupported image type {p.suffix!r} (expected .exr or .hdr)")
    return np.ascontiguousarray(img, dtype=np.float32)


def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:12]}{path.suffix}")


def write_exr(path, img: np.ndarray, *, half: bool = False) -> Path:
    """Write an image as an OpenEXR file (ZIP compression), atomically.

    Parameters
    ----------
    img : (H, W, 3) or (H, W) float
        RGB channels ``R, G, B``, or one ``Y`` channel.
    half : bool
        Store float16 (``HALF``) instead of float32. Finite values above
        ``constants.FP16_MAX`` raise rather than turning into infinity.

    Returns
    -------
    Path written. Inverse twin: :func:`read_hdr_image`.
    """
    import OpenEXR
    p = Path(path)
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 3:
        chans = {c: a[..., i] for i, c in enumerate("RGB")}
    elif a.ndim == 2:
        chans = {"Y": a}
    else:
        raise ValueError(f"{p}: image must be (H, W, 3) or (H, W), got {a.shape}")
    dt = np.float16 if half else np.float32
    if half:
        big = np.isfinite(a) & (np.abs(a) > constants.FP16_MAX)
        if big.any():
            raise HdrImageError(f"{p}: {int(big.sum())} values exceed the float16 maximum "
                                f"{constants.FP16_MAX:g}; write float32 (half=False)")
    chans = {k: np.ascontiguousarray(v, dtype=dt) for k, v in chans.items()}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    tmp = _tmp_beside(p)
    try:
        with OpenEXR.File(header, chans) as f:
            f.write(str(tmp))
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def write_hdr(path, img: np.ndarray) -> Path:
    """Write ``(H, W, 3)`` float RGB as a Radiance ``.hdr`` (RGBE: ~1 % relative precision, no negatives)."""
    import cv2
    p = Path(path)
    a = np.asarray(img, np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{p}: image must be (H, W, 3), got {a.shape}")
    tmp = _tmp_beside(p)
    try:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(a[..., ::-1])):
            raise HdrImageError(f"{p}: OpenCV could not write the file")
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


# ---------------------------------------------------------------------------
# equirectangular <-> cube
# ---------------------------------------------------------------------------

def equirect_directions(H: int, W: int | None = None) -> np.ndarray:
    """Unit directions through every pixel centre of an equirect image.

    Returns
    -------
    dirs : (H, W, 3) float64, ``W = 2 H`` by default. Inverse twin:
        :func:`direction_to_equirect`.
    """
    W = 2 * H if W is None else W
    u = (np.arange(W) + 0.5) / W
    v = (np.arange(H) + 0.5) / H
    lon = 2 * np.pi * (u - 0.5)
    lat = np.pi * (0.5 - v)
    cl = np.cos(lat)[:, None]
    return np.stack([cl * np.sin(lon)[None, :],
                     np.broadcast_to(np.sin(lat)[:, None], (H, W)),
                     -cl * np.cos(lon)[None, :]], axis=-1)


def direction_to_equirect(dirs: np.ndarray):
    """Equirect coordinates of directions.

    Parameters
    ----------
    dirs : (..., 3) float, nonzero

    Returns
    -------
    u, v : (...) float64 in ``[0, 1]`` (``u`` wraps; ``v = 0`` is up, +Y).
    """
    d = np.asarray(dirs, np.float64)
    n = np.linalg.norm(d, axis=-1)
    lon = np.arctan2(d[..., 0], -d[..., 2])
    lat = np.arcsin(np.clip(d[..., 1] / n, -1.0, 1.0))
    return lon / (2 * np.pi) + 0.5, 0.5 - lat / np.pi


def _sample_equirect(img: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Bilinear lookup with longitude wrap and clamped latitude: ``(..., C)`` float64."""
    H, W = img.shape[:2]
    u, v = direction_to_equirect(dirs)
    px = u * W - 0.5
    py = np.clip(v * H - 0.5, 0.0, H - 1.0)
    x0 = np.floor(px)
    fx = (px - x0)[..., None]
    x0 = x0.astype(np.int64) % W
    x1 = (x0 + 1) % W
    y0 = np.minimum(np.floor(py).astype(np.int64), max(H - 2, 0))
    fy = (py - y0)[..., None]
    y1 = np.minimum(y0 + 1, H - 1)
    top = img[y0, x0] * (1.0 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1.0 - fx) + img[y1, x1] * fx
    return top * (1.0 - fy) + bot * fy


def _area_resize(img: np.ndarray, H: int, W: int) -> np.ndarray:
    """Exact area-average shrink to ``(H, W)`` (OpenCV ``INTER_AREA``)."""
    import cv2
    a = np.ascontiguousarray(img, np.float32)
    out = cv2.resize(a, (W, H), interpolation=cv2.INTER_AREA)
    return out.reshape(H, W, a.shape[2])


def _polar_box_blur(img: np.ndarray, spacing: float, rows_per_block: int = 64) -> np.ndarray:
    """Average each row over ``spacing`` radians of arc along its parallel (wrapping).

    Row ``y`` at latitude ``lat`` has pixels ``(2 pi / W) cos(lat)`` radians
    wide; where a box of ``spacing`` radians spans more than one pixel, the
    row is box-filtered by that (fractional) width, capped at the full row.
    """
    H, W, C = img.shape
    lat = np.pi * (0.5 - (np.arange(H) + 0.5) / H)
    width = spacing / np.maximum((2 * np.pi / W) * np.cos(lat), 1e-300)
    width = np.minimum(width, float(W))
    rows = np.flatnonzero(width > 1.0 + 1e-9)
    if rows.size == 0:
        return img
    out = img.astype(np.float32, copy=True)
    x = np.arange(W) + 0.5
    for b in range(0, rows.size, rows_per_block):
        r = rows[b:b + rows_per_block]
        tiled = np.concatenate([img[r]] * 3, axis=1).astype(np.float64)  # (n, 3W, C)
        cs = np.concatenate([np.zeros((len(r), 1, C)), np.cumsum(tiled, axis=1)], axis=1)  # S(t), t = 0..3W
        w = width[r][:, None]
        a = W + x[None, :] - w / 2
        bnd = W + x[None, :] + w / 2

        def S(t):
            i = np.clip(np.floor(t).astype(np.int64), 0, 3 * W - 1)
            f = (t - i)[..., None]
            lo = np.take_along_axis(cs, i[..., None], axis=1)
            hi = np.take_along_axis(cs, i[..., None] + 1, axis=1)
            return lo + f * (hi - lo)

        out[r] = (S(bnd) - S(a)) / w[..., None]
    return out


def _face_directions(f: int, N: int) -> np.ndarray:
    """(N, N, 3) float64 directions of face ``f`` at resolution N (not normalised), §1."""
    c = texel_coords(N)
    tc, sc = np.meshgrid(c, c, indexing="ij")
    return MAJOR[f] + sc[..., None] * U_AXIS[f] + tc[..., None] * V_AXIS[f]


def equirect_to_cube(img: np.ndarray, R: int, supersample: int = config.IMPORT_SUPERSAMPLE) -> np.ndarray:
    """Resample an equirectangular image to a §1 cubemap, area-averaging.

    Parameters
    ----------
    img : (H, W, C) float
        Equirect convention of this module's docstring (``W = 2 H`` usual,
        not required).
    R : int
        Output face resolution.
    supersample : int
        ``k``: each output texel averages ``k x k`` bilinear samples (a box
        over the texel's footprint, through ``texel_directions(R * k)``).

    Returns
    -------
    faces : (6, R, R, C) float32

    Notes
    -----
    Anti-aliasing: the samples are ``2 / (R k)`` radians apart at a face
    centre (closer elsewhere). An image finer than that is first
    area-averaged down to about that spacing (OpenCV ``INTER_AREA``), and rows
    near the poles, where pixels shrink by ``cos(lat)``, are box-averaged along
    their parallel over the same arc. Constant images come out exactly
    constant. Inverse twin: :func:`cube_to_equirect`.
    """
    a = np.asarray(img)
    if a.ndim != 3:
        raise ValueError(f"equirect image must be (H, W, C), got {a.shape}")
    R, k = int(R), max(1, int(supersample))
    if R < 1:
        raise ValueError(f"R must be >= 1, got {R}")
    H, W, C = a.shape
    N = R * k
    spacing = 2.0 / N
    H_need = max(2, int(math.ceil(np.pi / spacing)))
    if H > H_need:
        W_new = max(2, int(round(W * H_need / H)))
        a = _area_resize(a, H_need, W_new)
    a = _polar_box_blur(np.asarray(a, np.float32), spacing)
    out = np.empty((6, R, R, C), np.float32)
    for f in range(6):
        vals = _sample_equirect(a, _face_directions(f, N))  # (N, N, C)
        out[f] = vals.reshape(R, k, R, k, C).mean(axis=(1, 3))
    return out


def cube_to_equirect(faces: np.ndarray, H: int, supersample: int = config.IMPORT_SUPERSAMPLE) -> np.ndarray:
    """Render a §1 cubemap as an equirectangular image, area-averaging.

    Parameters
    ----------
    faces : (6, R, R, C) float
    H : int
        Output height; the width is ``2 H``.
    supersample : int
        ``k``: each output pixel averages ``k x k`` seamless-bilinear cube
        samples spread uniformly over its ``(u, v)`` footprint.

    Returns
    -------
    img : (H, 2 H, C) float32

    Notes
    -----
    A cube much finer than the samples (``R > 2 H k / pi``) is first
    box-downsampled by the largest integer factor of ``R`` that keeps it at
    least that fine. Sub-samples are uniform in ``(u, v)``, not in solid angle
    (the difference inside one pixel is second order). Inverse twin:
    :func:`equirect_to_cube`.
    """
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[0] != 6 or faces.shape[1] != faces.shape[2]:
        raise ValueError(f"faces must be (6, R, R, C), got {faces.shape}")
    H, k = int(H), max(1, int(supersample))
    if H < 1:
        raise ValueError(f"H must be >= 1, got {H}")
    W = 2 * H
    R, C = faces.shape[1], faces.shape[3]
    R_need = max(1, int(math.ceil(2.0 * H * k / np.pi)))
    f_best = 1
    for f in range(2, R // R_need + 1):
        if R % f == 0:
            f_best = f
    cube = downsample_box(faces, f_best) if f_best > 1 else faces
    cube = np.asarray(cube, np.float64)
    out = np.empty((H, W, C), np.float32)
    sub = (np.arange(k) + 0.5) / k
    u = ((np.arange(W)[:, None] + sub[None, :]) / W).ravel()  # (W k,)
    lon = 2 * np.pi * (u - 0.5)
    rows_per_block = max(1, 2 ** 20 // (W * k * k))
    for y0 in range(0, H, rows_per_block):
        y1 = min(H, y0 + rows_per_block)
        v = ((np.arange(y0, y1)[:, None] + sub[None, :]) / H).ravel()  # (n k,)
        lat = np.pi * (0.5 - v)
        cl = np.cos(lat)[:, None]
        d = np.stack([cl * np.sin(lon)[None, :], np.broadcast_to(np.sin(lat)[:, None], (len(v), len(u))),
                      -cl * np.cos(lon)[None, :]], axis=-1)
        vals = sample_cube(cube, d)  # (n k, W k, C)
        out[y0:y1] = vals.reshape(y1 - y0, k, W, k, C).mean(axis=(1, 3))
    return out


# ---------------------------------------------------------------------------
# horizontal cross <-> cube
# ---------------------------------------------------------------------------

def cube_to_cross(faces: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Lay a §1 cubemap out as a horizontal cross (see the module docstring).

    Parameters
    ----------
    faces : (6, R, R, C)

    Returns
    -------
    img : (3 R, 4 R, C), the dtype of ``faces``; unused cells hold ``fill``.
    Inverse twin: :func:`cross_to_cube` (exact).
    """
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[0] != 6 or faces.shape[1] != faces.shape[2]:
        raise ValueError(f"faces must be (6, R, R, C), got {faces.shape}")
    R, C = faces.shape[1], faces.shape[3]
    img = np.full((3 * R, 4 * R, C), fill, dtype=faces.dtype)
    for f, (r, c) in enumerate(CROSS_CELLS):
        img[r * R:(r + 1) * R, c * R:(c + 1) * R] = faces[f]
    return img


def cross_to_cube(img: np.ndarray) -> np.ndarray:
    """Cut a horizontal cross ``(3 R, 4 R, C)`` into a §1 cubemap ``(6, R, R, C)`` (a copy, same dtype)."""
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[0] % 3 or a.shape[1] % 4 or a.shape[0] // 3 != a.shape[1] // 4:
        raise ValueError(f"a horizontal cross must be (3 R, 4 R, C), got {a.shape}")
    R = a.shape[0] // 3
    return np.stack([a[r * R:(r + 1) * R, c * R:(c + 1) * R] for r, c in CROSS_CELLS]).copy()


def detect_layout(shape) -> str | None:
    """``'equirect'`` when ``W == 2 H``, ``'cross'`` when ``(H, W) == (3 R, 4 R)``, else None."""
    H, W = int(shape[0]), int(shape[1])
    if W == 2 * H and H > 0:
        return "equirect"
    if H % 3 == 0 and W % 4 == 0 and H // 3 == W // 4 and H > 0:
        return "cross"
    return None


def image_to_cube(img: np.ndarray, R: int, layout: str = "auto",
                  supersample: int = config.IMPORT_SUPERSAMPLE) -> np.ndarray:
    """Any supported 360-degree layout to a ``(6, R, R, C)`` float32 cubemap.

    A cross is cut and then resampled with :func:`cubemap.resample_cube`
    (exact when its face size already is ``R``).
    """
    if layout == "auto":
        layout = detect_layout(img.shape)
        if layout is None:
            raise ValueError(f"image of {img.shape[1]}x{img.shape[0]} pixels is neither equirect "
                             f"(W = 2 H) nor a horizontal cross (3 W = 4 H)")
    if layout == "equirect":
        return equirect_to_cube(img, R, supersample)
    if layout == "cross":
        return resample_cube(cross_to_cube(img), R, supersample)
    raise ValueError(f"unknown layout {layout!r} (expected one of {LAYOUTS} or 'auto')")


# ---------------------------------------------------------------------------
# folders of images <-> probe sets
# ---------------------------------------------------------------------------

def _read_positions_csv(csv_path: Path):
    """Rows ``(line, name, (x, y, z))`` of a ``name,x,y,z`` CSV (header optional)."""
    rows = []
    seen = {}
    try:
        fh = open(csv_path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ProbeSetError(f"cannot read the CSV ({e})", file=csv_path) from e
    with fh:
        reader = csv.reader(fh)
        first = True
        try:
            for row in reader:
                line = reader.line_num
                cells = [c.strip() for c in row]
                if not cells or all(c == "" for c in cells) or cells[0].startswith("#"):
                    continue
                if first:
                    first = False
                    if [c.lower() for c in cells] == ["name", "x", "y", "z"]:
                        continue
                if len(cells) != 4:
                    raise ProbeSetError(f"expected 4 fields 'name,x,y,z', got {len(cells)}: {row!r}",
                                        file=csv_path, line=line, field="row")
                name = cells[0]
                if not name:
                    raise ProbeSetError("empty probe name", file=csv_path, line=line, field="name")
                xyz = []
                for axis, c in zip("xyz", cells[1:]):
                    try:
                        val = float(c)
                    except ValueError:
                        raise ProbeSetError(f"{c!r} is not a number", file=csv_path, line=line,
                                            name=name, field=axis) from None
                    if not math.isfinite(val):
                        raise ProbeSetError(f"{c!r} is not finite", file=csv_path, line=line,
                                            name=name, field=axis)
                    xyz.append(val)
                if name in seen:
                    raise ProbeSetError(f"name listed twice (first on line {seen[name]})",
                                        file=csv_path, line=line, name=name, field="name")
                seen[name] = line
                rows.append((line, name, tuple(xyz)))
        except (csv.Error, UnicodeDecodeError) as e:
            raise ProbeSetError(f"not a readable CSV ({e})", file=csv_path,
                                line=getattr(reader, "line_num", None)) from e
    if not rows:
        raise ProbeSetError("no probes listed (expected rows 'name,x,y,z')", file=csv_path)
    return rows


def _list_images(folder: Path) -> dict:
    """``{file name: Path}`` of the ``.exr`` / ``.hdr`` files in ``folder``."""
    return {p.name: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in config.HDR_SUFFIXES and p.is_file()}


def _resolve_image(folder: Path, images: dict, by_stem: dict, name: str):
    """The image a CSV name refers to: ``folder/name`` or ``folder/name.{exr,hdr}``; (Path, None) or (None, why)."""
    if "/" in name or "\\" in name or name in (".", ".."):
        return None, f"name {name!r} is not a plain file name"
    if name in images:
        return images[name], None
    found = by_stem.get(name, [])
    if len(found) == 1:
        return found[0], None
    if len(found) > 1:
        return None, f"ambiguous: several images are named {name!r}: {[p.name for p in found]}"
    if (folder / name).is_file():
        return None, f"{folder / name} is not an .exr or .hdr file"
    return None, f"no image {name!r} (nor {name}.exr / {name}.hdr) in {folder}"


def import_folder(folder, csv_path, R: int, layout: str = "auto", *,
                  supersample: int = config.IMPORT_SUPERSAMPLE, dtype=np.float32,
                  strict: bool = True, validate: bool = True, progress: bool | None = None) -> ProbeSet:
    """Build a probe set from a folder of 360-degree HDR images and a CSV of positions.

    Parameters
    ----------
    folder : str or Path
        Holds one ``.exr`` / ``.hdr`` image per probe.
    csv_path : str or Path
        Rows ``name,x,y,z`` (an optional ``name,x,y,z`` header, blank lines
        and ``#`` comment lines are skipped). ``name`` is a file in ``folder``,
        with or without its ``.exr`` / ``.hdr`` suffix.
    R : int
        Face resolution of the set.
    layout : ``'auto'``, ``'equirect'`` or ``'cross'``
        ``'auto'``: the first image decides (``W = 2 H`` equirect, ``3 W = 4 H``
        cross) and every other image must have the same layout (sizes may
        differ: each is resampled to ``R``).
    supersample : int
        See :func:`equirect_to_cube`.
    dtype : float32 or float16
        Of the returned ``faces``.
    strict : bool
        Reject ``.exr`` / ``.hdr`` files in ``folder`` that the CSV does not
        list.
    validate : bool
        Run :func:`probeset.validate` on the result (errors then carry the
        CSV line too). ``False`` lets a caller sanitise instead.
    progress : bool or None
        tqdm bar: None shows it on a terminal only.

    Returns
    -------
    ProbeSet
        ``positions`` ``(P, 3)`` float32 in CSV order, ``faces``
        ``(P, 6, R, R, 3)``, ``names`` from the CSV, ``source`` the CSV
        path, no grid description.

    Raises
    ------
    FileNotFoundError
        No CSV, or ``folder`` is not a directory.
    ProbeSetError
        ``CSV:LINE: probe I ('NAME'): FIELD: detail`` for a bad row, a
        missing, unreadable or mislaid-out image, a name listed twice, two
        names for one file, unlisted images (``strict``), float16 overflow.
    """
    from tqdm.auto import tqdm

    folder, csv_path = Path(folder), Path(csv_path)
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "image folder not found", str(folder))
    if not csv_path.is_file():
        raise FileNotFoundError(errno.ENOENT, "positions CSV not found", str(csv_path))
    if layout not in ("auto",) + LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (expected 'auto', 'equirect' or 'cross')")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float16 or float32, got {dtype}")
    rows = _read_positions_csv(csv_path)
    images = _list_images(folder)
    by_stem: dict = {}
    for p in images.values():
        by_stem.setdefault(p.stem, []).append(p)
    files, used = [], {}
    for i, (line, name, _) in enumerate(rows):
        p, why = _resolve_image(folder, images, by_stem, name)
        if p is None:
            raise ProbeSetError(why, file=csv_path, line=line, probe=i, name=name, field="image")
        if p in used:
            raise ProbeSetError(f"{p.name} is already the image of line {used[p]}",
                                file=csv_path, line=line, probe=i, name=name, field="image")
        used[p] = line
        files.append(p)
    if strict:
        extra = sorted(n for n, p in images.items() if p not in used)
        if extra:
            more = f" ... ({len(extra) - 10} more)" if len(extra) > 10 else ""
            raise ProbeSetError(f"images in {folder} that the CSV does not list: {extra[:10]}{more} "
                                f"(strict=False ignores them)", file=csv_path, field="names")
    P = len(rows)
    positions = np.array([xyz for _, _, xyz in rows], np.float64).astype(np.float32)
    faces = np.empty((P, 6, R, R, 3), dtype)
    first = None  # (layout, line, file)
    it = tqdm(range(P), desc="import probes", unit="probe", disable=(None if progress is None else not progress))
    for i in it:
        line, name, _ = rows[i]
        p = files[i]
        where = dict(file=csv_path, line=line, probe=i, name=name, field="image")
        try:
            img = read_hdr_image(p)
        except (OSError, ValueError, RuntimeError) as e:
            raise ProbeSetError(f"cannot read {p}: {e}", **where) from e
        lay = detect_layout(img.shape)
        if lay is None:
            raise ProbeSetError(f"{p} is {img.shape[1]}x{img.shape[0]} pixels: neither equirect (W = 2 H) "
                                f"nor a horizontal cross (3 W = 4 H)", **where)
        if layout != "auto" and lay != layout:
            raise ProbeSetError(f"{p} is laid out as {lay!r} ({img.shape[1]}x{img.shape[0]}), "
                                f"not {layout!r}", **where)
        if first is None:
            first = (lay, line, p)
        elif lay != first[0]:
            raise ProbeSetError(f"{p} is laid out as {lay!r} ({img.shape[1]}x{img.shape[0]}) but "
                                f"{first[2]} (line {first[1]}) is {first[0]!r}; all images must share "
                                f"one layout", **where)
        cube = image_to_cube(img, R, lay, supersample)
        if dtype == np.float16:
            big = np.isfinite(cube) & (cube > constants.FP16_MAX)
            if big.any():
                raise ProbeSetError(f"{int(big.sum())} values of {p} exceed the float16 maximum "
                                    f"{constants.FP16_MAX:g}; import as float32", **where)
        faces[i] = cube
    ps = ProbeSet(positions, faces, names=[n for _, n, _ in rows], source=str(csv_path))
    if validate:
        try:
            ps.validate()
        except ProbeSetError as e:
            if e.probe is None:
                raise
            line = rows[e.probe][0]
            raise ProbeSetError(e.detail + f" (image {files[e.probe]})", file=csv_path, line=line,
                                probe=e.probe, name=e.name, field=e.field) from e
    return ps


def _export_file_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ValueError(f"probe name {name!r} cannot be a file name")
    return name if name.lower().endswith(".exr") else name + ".exr"


def export_exr_folder(probeset: ProbeSet, folder, layout: str = "cross", *, height: int | None = None,
                      half: bool = False, csv_name: str = "positions.csv",
                      progress: bool | None = None) -> list:
    """Write one EXR per probe plus ``positions.csv``, for inspection and round trips.

    Parameters
    ----------
    probeset : ProbeSet
        Lazy sets are read chunk-wise.
    folder : str or Path
        Created if missing; files of the same names are replaced.
    layout : ``'cross'`` or ``'equirect'``
        ``'cross'``: ``(3 R, 4 R)`` images holding the faces exactly.
        ``'equirect'``: ``(height, 2 height)`` images (resampled, see
        :func:`cube_to_equirect`).
    height : int, optional
        Equirect height; default ``2 R``.
    half : bool
        float16 EXR channels (values above ``constants.FP16_MAX`` raise).
    csv_name : str
        The CSV written beside the images: ``name,x,y,z`` with a header,
        coordinates printed with 9 significant digits (float32 exact).

    Returns
    -------
    list of Path: the images (probe order), then the CSV.

    Notes
    -----
    File names are the probe names (``.exr`` appended unless present) or
    ``probe_000000.exr`` ...; the CSV lists the names as :func:`import_folder`
    resolves them, so ``import_folder(folder, folder / csv_name, R)`` reads
    the export back (exactly for ``'cross'`` with float32).
    """
    from tqdm.auto import tqdm

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (expected 'cross' or 'equirect')")
    P, R = probeset.n_probes, probeset.resolution
    height = 2 * R if height is None else int(height)
    if probeset.names is not None:
        names = list(probeset.names)
    else:
        width = max(6, len(str(P - 1)))
        names = [f"probe_{i:0{width}d}" for i in range(P)]
    fnames = [_export_file_name(n) for n in names]
    if len(set(fnames)) != len(fnames):
        raise ValueError("probe names map to duplicate file names")
    if csv_name in fnames:
        raise ValueError(f"a probe name collides with the CSV name {csv_name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    bar = tqdm(total=P, desc="export probes", unit="probe", disable=(None if progress is None else not progress))
    with bar:
        for start, _, block in probeset.iter_chunks():
            for j in range(len(block)):
                i = start + j
                cube = block[j].astype(np.float32)
                img = cube_to_cross(cube) if layout == "cross" else cube_to_equirect(cube, height)
                try:
                    written.append(write_exr(folder / fnames[i], img, half=half))
                except HdrImageError as e:
                    raise ProbeSetError(str(e), file=probeset.source, probe=i, name=probeset.probe_name(i),
                                        field="faces") from e
                bar.update(1)
    csv_path = folder / csv_name
    tmp = _tmp_beside(csv_path)
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["name", "x", "y", "z"])
            for n, p in zip(names, np.asarray(probeset.positions, np.float32)):
                w.writerow([n] + [f"{float(v):.9g}" for v in p])
        os.replace(tmp, csv_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    written.append(csv_path)
    return written
