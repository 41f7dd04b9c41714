"""Layouts of a 360-degree image, converted to and from the DESIGN-NOTES §1
cubemap ``(6, R, R, C)``.

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
* No vertical cross, strip or octahedral layouts.
"""
from __future__ import annotations

import math

import numpy as np

from probewarp.baker import config
from probewarp.baker.cubemap import MAJOR, U_AXIS, V_AXIS, downsample_box, resample_cube, sample_cube, texel_coords

#: ``(row, column)`` of each §1 face in the horizontal cross, in units of R.
CROSS_CELLS = ((1, 2), (1, 0), (0, 1), (2, 1), (1, 1), (1, 3))
LAYOUTS = ("equirect", "cross")


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
