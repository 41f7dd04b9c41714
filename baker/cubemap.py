"""The cubemap convention of DESIGN-NOTES §1, on the CPU.

A cubemap is an array ``(6, R, R, C)``: face (OpenGL order ``+X -X +Y -Y +Z
-Z``), row ``t``, column ``s``, channel. Texel ``(f, t, s)`` looks along::

    d = MAJOR[f] + sc * U_AXIS[f] + tc * V_AXIS[f]
    sc = 2 (s + 0.5) / R - 1,   tc = 2 (t + 0.5) / R - 1

which is exactly what ``glTexImage3D(GL_TEXTURE_CUBE_MAP_ARRAY, ...)`` expects
for the array uploaded as is. Decoder twins: :func:`texel_directions` (texel
-> direction) and :func:`direction_to_face_st` (direction -> texel coords);
in GLSL the hardware does the latter (``texture(samplerCube*, d)``), and
``shaders/common_cubemap.glsl`` has the former for compute passes.

Bilinear filtering is *seamless*: a tap that falls off a face is fetched from
the adjacent face's border texel (the texel that shares the edge), and a tap
that falls off a corner takes the average of the three real texels around
that corner, as GL does with ``GL_TEXTURE_CUBE_MAP_SEAMLESS``. Every corner
tap's weight is therefore redistributed over the other three taps, so a
sample always has at most four distinct texels: :func:`_cube_taps` returns
them as flat indices into ``faces.reshape(6 * R * R, C)``. The baker's warp
and adjoint kernels are built on that one function.

Notes
-----
Face selection on exact ties (``|x| == |y|`` ...) prefers X, then Y, then Z.
Both neighbours of a tie give the same seamless result to within rounding.
"""
from __future__ import annotations

import numpy as np
import numba as nb

from probewarp.baker import config
from probewarp.format.texformats import downsample_box   # the one box filter (mip chains too)

#: Major axis of each face (the direction through its centre).
MAJOR = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)
#: Direction in which the column coordinate ``sc`` grows on each face.
U_AXIS = np.array([[0, 0, -1], [0, 0, 1], [1, 0, 0], [1, 0, 0], [1, 0, 0], [-1, 0, 0]], np.float64)
#: Direction in which the row coordinate ``tc`` grows on each face.
V_AXIS = np.array([[0, -1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], [0, -1, 0], [0, -1, 0]], np.float64)

_JIT = dict(nogil=True, cache=config.NUMBA_CACHE, fastmath=config.NUMBA_FASTMATH)


def texel_coords(R: int) -> np.ndarray:
    """Texel-centre face coordinates ``c_k = 2 (k + 0.5) / R - 1``: ``(R,)`` float64."""
    return 2.0 * (np.arange(R, dtype=np.float64) + 0.5) / R - 1.0


def texel_directions(R: int, normalize: bool = True) -> np.ndarray:
    """Directions through every texel centre.

    Returns
    -------
    dirs : (6, R, R, 3) float64
        ``dirs[f, t, s]``; unit length unless ``normalize=False`` (then the
        major-axis component is exactly +-1).
    """
    c = texel_coords(R)
    tc, sc = np.meshgrid(c, c, indexing="ij")  # (R, R): row t, column s
    d = (MAJOR[:, None, None, :] + sc[None, :, :, None] * U_AXIS[:, None, None, :]
         + tc[None, :, :, None] * V_AXIS[:, None, None, :])
    if normalize:
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return d


def texel_solid_angles(R: int) -> np.ndarray:
    """Solid angle of every texel, ``(2/R)^2 / (1 + sc^2 + tc^2)^(3/2)``.

    Returns
    -------
    omega : (6, R, R) float64
        Sums to ``4 pi`` up to the midpoint rule's error (about ``0.25 / R^2``
        relative: 1.5 % at R = 4, 0.1 % at R = 16).
    """
    c = texel_coords(R)
    tc, sc = np.meshgrid(c, c, indexing="ij")
    w = (2.0 / R) ** 2 / (1.0 + sc * sc + tc * tc) ** 1.5
    return np.broadcast_to(w, (6, R, R)).copy()


def texel_weights(R: int) -> np.ndarray:
    """Solid angles normalised to sum 1 over the sphere: ``(6, R, R)`` float64 (DESIGN-NOTES §5)."""
    w = texel_solid_angles(R)
    return w / w.sum()


def direction_to_face_st(dirs: np.ndarray):
    """Which face a direction hits and where, in continuous texel units.

    Parameters
    ----------
    dirs : (..., 3) float
        Need not be normalised; must not be zero.

    Returns
    -------
    face : (...) int64
    s, t : (...) float64
        Column and row in texel units: texel ``k``'s centre is at ``k + 0.5``
        (so ``s`` is in ``[0, R]`` once multiplied by ``R``; here it is in
        ``[0, 1]``, the GL ``(s, t)`` of Table 8.19).
    """
    d = np.asarray(dirs, dtype=np.float64)
    ax = np.abs(d)
    axis = np.where((ax[..., 0] >= ax[..., 1]) & (ax[..., 0] >= ax[..., 2]), 0,
                    np.where(ax[..., 1] >= ax[..., 2], 1, 2))
    comp = np.take_along_axis(d, axis[..., None], -1)[..., 0]
    face = 2 * axis + (comp < 0)
    ma = np.abs(comp)
    sc = np.einsum("...k,...k->...", d, U_AXIS[face]) / ma
    tc = np.einsum("...k,...k->...", d, V_AXIS[face]) / ma
    return face.astype(np.int64), 0.5 * (sc + 1.0), 0.5 * (tc + 1.0)


# ---------------------------------------------------------------------------
# jitted kernels (private: take and return arrays; public wrappers validate)
# ---------------------------------------------------------------------------

@nb.njit(**_JIT)
def _face_of(x, y, z):
    """Face index and (sc, tc) in [-1, 1] for a nonzero direction."""
    ax, ay, az = abs(x), abs(y), abs(z)
    if ax >= ay and ax >= az:
        inv = 1.0 / ax
        if x >= 0:
            return 0, -z * inv, -y * inv
        return 1, z * inv, -y * inv
    if ay >= az:
        inv = 1.0 / ay
        if y >= 0:
            return 2, x * inv, z * inv
        return 3, x * inv, -z * inv
    inv = 1.0 / az
    if z >= 0:
        return 4, x * inv, -y * inv
    return 5, -x * inv, -y * inv


@nb.njit(**_JIT)
def _resolve(f, i, j, R):
    """Flat index of texel (face f, column i, row j) with i or j one step off
    the face (not both); the texel across the edge that shares it."""
    if 0 <= i < R and 0 <= j < R:
        return (f * R + j) * R + i
    sc = 2.0 * (i + 0.5) / R - 1.0
    tc = 2.0 * (j + 0.5) / R - 1.0
    if i < 0 or i >= R:
        sgn = 1.0 if i >= R else -1.0
        sc = sgn
        nx, ny, nz = sgn * U_AXIS[f, 0], sgn * U_AXIS[f, 1], sgn * U_AXIS[f, 2]
    else:
        sgn = 1.0 if j >= R else -1.0
        tc = sgn
        nx, ny, nz = sgn * V_AXIS[f, 0], sgn * V_AXIS[f, 1], sgn * V_AXIS[f, 2]
    # point on the shared edge, in world directions
    vx = MAJOR[f, 0] + sc * U_AXIS[f, 0] + tc * V_AXIS[f, 0]
    vy = MAJOR[f, 1] + sc * U_AXIS[f, 1] + tc * V_AXIS[f, 1]
    vz = MAJOR[f, 2] + sc * U_AXIS[f, 2] + tc * V_AXIS[f, 2]
    # neighbour face: the one whose major axis is the off-face direction
    if nx != 0.0:
        g = 0 if nx > 0 else 1
    elif ny != 0.0:
        g = 2 if ny > 0 else 3
    else:
        g = 4 if nz > 0 else 5
    sn = vx * U_AXIS[g, 0] + vy * U_AXIS[g, 1] + vz * U_AXIS[g, 2]
    tn = vx * V_AXIS[g, 0] + vy * V_AXIS[g, 1] + vz * V_AXIS[g, 2]
    ii = int(np.floor((sn + 1.0) * 0.5 * R - 0.5 + 0.5))
    jj = int(np.floor((tn + 1.0) * 0.5 * R - 0.5 + 0.5))
    ii = min(max(ii, 0), R - 1)
    jj = min(max(jj, 0), R - 1)
    return (g * R + jj) * R + ii


@nb.njit(**_JIT)
def _cube_taps(R, x, y, z, idx, w):
    """Seamless bilinear taps of direction (x, y, z) on an R x R cubemap.

    Writes four flat texel indices into ``idx[0:4]`` (int64) and their
    weights into ``w[0:4]`` (float64, sum 1). Corner taps are folded into the
    other three (GL's average-of-three rule), so entries may repeat with a
    zero weight. Inverse twin: :func:`texel_directions`.
    """
    f, sc, tc = _face_of(x, y, z)
    px = (sc + 1.0) * 0.5 * R - 0.5
    py = (tc + 1.0) * 0.5 * R - 0.5
    # px, py >= -0.5, so int(p + 1) - 1 is floor(p)
    i0 = int(px + 1.0) - 1
    j0 = int(py + 1.0) - 1
    fx = px - i0
    fy = py - j0
    w[0] = (1.0 - fx) * (1.0 - fy)
    w[1] = fx * (1.0 - fy)
    w[2] = (1.0 - fx) * fy
    w[3] = fx * fy
    if i0 >= 0 and j0 >= 0 and i0 < R - 1 and j0 < R - 1:
        # fast path: the whole footprint lies on one face (most samples)
        base = (f * R + j0) * R + i0
        idx[0] = base
        idx[1] = base + 1
        idx[2] = base + R
        idx[3] = base + R + 1
        return
    corner = -1
    for k in range(4):
        i = i0 + (k & 1)
        j = j0 + (k >> 1)
        off_i = i < 0 or i >= R
        off_j = j < 0 or j >= R
        if off_i and off_j:
            corner = k
            idx[k] = -1
        else:
            idx[k] = _resolve(f, i, j, R)
    if corner >= 0:
        share = w[corner] / 3.0
        w[corner] = 0.0
        for k in range(4):
            if k != corner:
                w[k] += share
        idx[corner] = idx[3 - corner]  # any valid index; its weight is 0


@nb.njit(**_JIT)
def _sample_kernel(flat, R, dirs, out):
    """out[n, :] = seamless bilinear sample of ``flat`` (6*R*R, C) along dirs[n]."""
    idx = np.empty(4, np.int64)
    w = np.empty(4, np.float64)
    C = flat.shape[1]
    for n in range(dirs.shape[0]):
        _cube_taps(R, dirs[n, 0], dirs[n, 1], dirs[n, 2], idx, w)
        for c in range(C):
            acc = 0.0
            for k in range(4):
                acc += w[k] * flat[idx[k], c]
            out[n, c] = acc


def sample_cube(faces: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Seamless bilinear lookup of a cubemap along arbitrary directions.

    Parameters
    ----------
    faces : (6, R, R, C) float
    dirs : (..., 3) float, nonzero (need not be normalised)

    Returns
    -------
    values : (..., C) float64
    """
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[0] != 6 or faces.shape[1] != faces.shape[2]:
        raise ValueError(f"faces must be (6, R, R, C), got {faces.shape}")
    dirs = np.asarray(dirs, dtype=np.float64)
    if dirs.shape[-1] != 3:
        raise ValueError(f"dirs must be (..., 3), got {dirs.shape}")
    R, C = faces.shape[1], faces.shape[3]
    flat = np.ascontiguousarray(faces.reshape(6 * R * R, C), dtype=np.float64)
    d = np.ascontiguousarray(dirs.reshape(-1, 3))
    out = np.empty((d.shape[0], C), np.float64)
    _sample_kernel(flat, R, d, out)
    return out.reshape(dirs.shape[:-1] + (C,))


def resample_cube(faces: np.ndarray, R_out: int, supersample: int = 4) -> np.ndarray:
    """Resample a cubemap to another resolution with proper filtering.

    Integer downscales are exact box filters (:func:`downsample_box`). Other
    ratios sample ``supersample^2`` seamless-bilinear points per output texel
    and average them (a box filter over the output texel's footprint).

    Parameters
    ----------
    faces : (6, R, R, C)
    R_out : int

    Returns
    -------
    (6, R_out, R_out, C) float32
    """
    faces = np.asarray(faces)
    R = faces.shape[1]
    if R_out == R:
        return faces.astype(np.float32)
    if R % R_out == 0:
        return downsample_box(faces, R // R_out).astype(np.float32)
    k = max(1, int(supersample) * max(1, int(np.ceil(R / R_out))))
    hi = texel_directions(R_out * k, normalize=False)
    vals = sample_cube(faces, hi)
    return downsample_box(vals, k).astype(np.float32)
