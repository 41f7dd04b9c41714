"""A fast procedural probe field for benchmarks: two furnished rooms, ray cast.

Another kind of scene than the built-in town (``probewarp capture builtin``):
an *interior*, where nearly everything a probe sees is a few metres away, so
parallax between neighbouring probes is strong and the warp has work to do.
No GL, no capture extra: numpy plus one numba kernel, fast enough to make a
million R = 8 probes in a few minutes on 2 cores (see :func:`write_field_zarr`).

The scene (world units are metres, y up)
----------------------------------------
* A 12 x 4 x 8 room (``ROOM_LO``..``ROOM_HI``) with coloured diffuse walls
  and a checkered floor, split at x = 6 by a partition wall with a doorway
  into room A (x < 6) and room B (x > 6).
* Room A: an emissive ceiling lamp (radiance ``LAMP_RADIANCE``, about 40,
  i.e. 30-100x the lit walls), a table, a cabinet, two spheres.
* Room B: a window in the +x wall through which a bright sky (with a sun
  glow) is seen, and through which the sun lights a patch of the floor and
  the partition; a pillar, a crate, three spheres (one floating).
* Radiance = emitted (lamp, sky through the window) + albedo *
  (ambient + direct / pi): direct light from the lamp (2 x 2 point samples
  on its rectangle: stepped soft shadows), from the window as an area light
  (one sample, ``WINDOW_RADIANCE``) and from the sun through the window
  (hard shadows), all shadowed by every box and sphere. Lit walls are about
  0.3-1, the lamp 40, the sky 3-90: HDR.
* ``seed`` jitters the spheres' centres and colours; seed 0 is the
  reference scene. ``FIELD_VERSION`` changes with the scene (caches key on it).

Speed: about 4,000 probes per CPU-second at R = 8 for the rendering, plus
the zarr writer's compression; a million probes (100^3) in roughly 4 minutes
on 2 quiet cores. Streaming goes through
:class:`probewarp.baker.probewriter.ZarrProbeWriter` (the store
``ProbeSet.save`` writes; atomic).

Each probe texel is one ray through its centre (DESIGN-NOTES §1 directions
from :func:`probewarp.baker.cubemap.texel_directions`); the checker floor is
box-filtered over the texel's footprint so that far tiles do not alias.
Probes that fall inside a solid object (the partition, furniture) see its
inside: a constant dark colour (``albedo * ambient``), as probes inside walls
of real games do.

Notes
-----
* Deliberately left out: interreflections beyond the constant ambient term,
  texture filtering of shadow edges, supersampling, glossy materials.
* The kernel runs without ``fastmath`` so a probe's radiance depends on its
  position only, never on the batch it was rendered in: a streamed store
  equals :func:`field_probes` bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numba as nb
import numpy as np

from probewarp.baker.cubemap import texel_directions
from probewarp.baker.probeset import ProbeSet

# ------------------------------------------------------------------ constants
#: Bumped whenever the scene or the rendering changes (benchmark caches key on it).
FIELD_VERSION = 1
ROOM_LO = np.array([0.0, 0.0, 0.0])
ROOM_HI = np.array([12.0, 4.0, 8.0])
#: Default probe-grid bounds: the room inset by 0.25 m (some probes land
#: inside the partition and furniture, as in real probe grids).
GRID_LO = ROOM_LO + 0.25
GRID_HI = ROOM_HI - 0.25
#: Radiance of the ceiling lamp's face (linear, RGB).
LAMP_RADIANCE = np.array([42.0, 38.0, 32.0])
#: Lamp rectangle on the ceiling: x0, x1, z0, z1.
LAMP_RECT = np.array([2.2, 3.8, 3.2, 4.8])
#: Area-light point samples per axis (S x S on the lamp, on the window).
LAMP_SAMPLES = 2
WINDOW_SAMPLES = 1
#: Window rectangle in the +x wall: y0, y1, z0, z1.
WINDOW_RECT = np.array([1.0, 3.2, 1.5, 6.5])
#: Unit direction towards the sun (through the window).
SUN_DIR = np.array([1.0, 0.75, 0.35]) / np.linalg.norm([1.0, 0.75, 0.35])
#: Sun irradiance on a surface facing it (linear, RGB).
SUN_IRRADIANCE = np.array([30.0, 27.0, 22.0])
#: Sky through the window: horizon and zenith radiance, sun-glow amplitude and exponent.
SKY_HORIZON = np.array([9.0, 9.0, 8.0])
SKY_ZENITH = np.array([2.5, 4.0, 9.0])
SKY_GROUND = np.array([1.5, 1.3, 1.0])
SUN_GLOW = np.array([80.0, 70.0, 50.0])
SUN_GLOW_POWER = 24.0
#: The window as an area light (the sky's mean radiance through it, emitted into the room).
WINDOW_RADIANCE = np.array([6.0, 6.5, 8.0])
#: Constant ambient irradiance factor (radiance = albedo * (AMBIENT + E / pi)).
AMBIENT = np.array([0.10, 0.10, 0.11])
#: Floor checker tile size (m) and its two albedos.
CHECKER_TILE = 0.8
FLOOR_ALBEDO = np.array([[0.62, 0.56, 0.46], [0.16, 0.13, 0.11]])
#: Wall albedos by the face a ray leaves the room through (OpenGL face order:
#: +x, -x, +y ceiling, -y floor (unused: checker), +z, -z).
WALL_ALBEDO = np.array([[0.72, 0.66, 0.56], [0.66, 0.22, 0.16], [0.80, 0.80, 0.78],
                        [0.50, 0.50, 0.50], [0.26, 0.56, 0.30], [0.20, 0.30, 0.62]])
#: Boxes (lo, hi), albedo: the partition with its doorway, then furniture.
BOXES = np.array([
    [[5.9, 0.0, 0.0], [6.1, 4.0, 3.0]],      # partition, south of the door
    [[5.9, 0.0, 5.0], [6.1, 4.0, 8.0]],      # partition, north of the door
    [[5.9, 2.6, 3.0], [6.1, 4.0, 5.0]],      # lintel
    [[1.0, 0.75, 1.0], [2.6, 0.85, 2.2]],    # table top (room A)
    [[1.7, 0.0, 1.5], [1.9, 0.75, 1.7]],     # table pedestal
    [[3.5, 0.0, 0.0], [5.0, 2.2, 0.6]],      # cabinet against -z
    [[8.6, 0.0, 3.8], [9.0, 4.0, 4.2]],      # pillar (room B)
    [[10.0, 0.0, 5.5], [11.0, 0.8, 6.5]],    # crate
])
BOX_ALBEDO = np.array([[0.75, 0.72, 0.68], [0.75, 0.72, 0.68], [0.75, 0.72, 0.68],
                       [0.45, 0.28, 0.15], [0.30, 0.30, 0.30], [0.55, 0.42, 0.30],
                       [0.70, 0.70, 0.70], [0.60, 0.48, 0.25]])
#: Spheres (x, y, z, radius); albedos drawn per seed.
SPHERES = np.array([
    [4.5, 0.6, 5.8, 0.6],
    [2.0, 1.15, 1.6, 0.3],
    [7.5, 1.0, 2.0, 1.0],
    [10.5, 2.2, 2.0, 0.4],
    [9.5, 0.5, 6.9, 0.5],
])
#: Sphere centre jitter (m) for seeds (each axis uniform in +-this).
SPHERE_JITTER = 0.25
#: Ray offset from surfaces (m).
EPS = 1e-4
#: Default probes per rendered block in :func:`write_field_zarr` (memory:
#: block * 6R^2 * 3 * 4 bytes, about 19 MB at R = 8).
BLOCK_PROBES = 4096


# --------------------------------------------------------------------- kernel
@nb.njit(cache=True, nogil=True)
def _hit_objects(ox, oy, oz, dx, dy, dz, tmax, blo, bhi, sph):
    """Nearest hit in (EPS, tmax) among boxes and spheres.

    Returns (t, kind, index, nx, ny, nz): kind 0 none, 1 box, 2 sphere."""
    ix = 1.0 / dx if dx != 0.0 else 1e30
    iy = 1.0 / dy if dy != 0.0 else 1e30
    iz = 1.0 / dz if dz != 0.0 else 1e30
    best, kind, idx, axis = tmax, 0, -1, 0
    for b in range(blo.shape[0]):
        t1 = (blo[b, 0] - ox) * ix
        t2 = (bhi[b, 0] - ox) * ix
        tn, tf, ax = min(t1, t2), max(t1, t2), 0
        t1 = (blo[b, 1] - oy) * iy
        t2 = (bhi[b, 1] - oy) * iy
        if min(t1, t2) > tn:
            tn, ax = min(t1, t2), 1
        tf = min(tf, max(t1, t2))
        t1 = (blo[b, 2] - oz) * iz
        t2 = (bhi[b, 2] - oz) * iz
        if min(t1, t2) > tn:
            tn, ax = min(t1, t2), 2
        tf = min(tf, max(t1, t2))
        if tn <= tf and tn > EPS and tn < best:
            best, kind, idx, axis = tn, 1, b, ax
    for s in range(sph.shape[0]):
        qx, qy, qz = ox - sph[s, 0], oy - sph[s, 1], oz - sph[s, 2]
        bb = qx * dx + qy * dy + qz * dz
        c = qx * qx + qy * qy + qz * qz - sph[s, 3] * sph[s, 3]
        disc = bb * bb - c
        if disc > 0.0:
            t = -bb - math.sqrt(disc)
            if t > EPS and t < best:
                best, kind, idx = t, 2, s
    nx = ny = nz = 0.0
    if kind == 1:
        if axis == 0:
            nx = -1.0 if dx > 0.0 else 1.0
        elif axis == 1:
            ny = -1.0 if dy > 0.0 else 1.0
        else:
            nz = -1.0 if dz > 0.0 else 1.0
    elif kind == 2:
        r = sph[idx, 3]
        nx = (ox + best * dx - sph[idx, 0]) / r
        ny = (oy + best * dy - sph[idx, 1]) / r
        nz = (oz + best * dz - sph[idx, 2]) / r
    return best, kind, idx, nx, ny, nz


@nb.njit(cache=True, nogil=True)
def _occluded(ox, oy, oz, dx, dy, dz, tmax, blo, bhi, sph):
    """Whether any box or sphere meets the ray in (EPS, tmax): the shadow test."""
    ix = 1.0 / dx if dx != 0.0 else 1e30
    iy = 1.0 / dy if dy != 0.0 else 1e30
    iz = 1.0 / dz if dz != 0.0 else 1e30
    for s in range(sph.shape[0]):
        qx, qy, qz = ox - sph[s, 0], oy - sph[s, 1], oz - sph[s, 2]
        bb = qx * dx + qy * dy + qz * dz
        c = qx * qx + qy * qy + qz * qz - sph[s, 3] * sph[s, 3]
        disc = bb * bb - c
        if disc > 0.0:
            t = -bb - math.sqrt(disc)
            if EPS < t < tmax:
                return True
    for b in range(blo.shape[0]):
        t1 = (blo[b, 0] - ox) * ix
        t2 = (bhi[b, 0] - ox) * ix
        tn, tf = min(t1, t2), max(t1, t2)
        t1 = (blo[b, 1] - oy) * iy
        t2 = (bhi[b, 1] - oy) * iy
        tn, tf = max(tn, min(t1, t2)), min(tf, max(t1, t2))
        t1 = (blo[b, 2] - oz) * iz
        t2 = (bhi[b, 2] - oz) * iz
        tn, tf = max(tn, min(t1, t2)), min(tf, max(t1, t2))
        if tn <= tf and EPS < tn < tmax:
            return True
    return False


@nb.njit(cache=True, nogil=True)
def _room_exit(ox, oy, oz, dx, dy, dz, rlo, rhi):
    """Where a ray from inside the room leaves it: (t, face), face in §1 order."""
    t, face = 1e30, 0
    if dx > 0.0:
        t, face = (rhi[0] - ox) / dx, 0
    elif dx < 0.0:
        t, face = (rlo[0] - ox) / dx, 1
    if dy > 0.0:
        ty = (rhi[1] - oy) / dy
        if ty < t:
            t, face = ty, 2
    elif dy < 0.0:
        ty = (rlo[1] - oy) / dy
        if ty < t:
            t, face = ty, 3
    if dz > 0.0:
        tz = (rhi[2] - oz) / dz
        if tz < t:
            t, face = tz, 4
    elif dz < 0.0:
        tz = (rlo[2] - oz) / dz
        if tz < t:
            t, face = tz, 5
    return max(t, 0.0), face


@nb.njit(cache=True, nogil=True)
def _filtered_checker(u, v, w):
    """Box-filtered checkerboard of unit tiles over a footprint w: 0..1 (1 = tile 'odd')."""
    w = max(w, 1e-4)
    a = 2.0 * (abs((u - 0.5 * w) * 0.5 - math.floor((u - 0.5 * w) * 0.5) - 0.5)
               - abs((u + 0.5 * w) * 0.5 - math.floor((u + 0.5 * w) * 0.5) - 0.5)) / w
    b = 2.0 * (abs((v - 0.5 * w) * 0.5 - math.floor((v - 0.5 * w) * 0.5) - 0.5)
               - abs((v + 0.5 * w) * 0.5 - math.floor((v + 0.5 * w) * 0.5) - 0.5)) / w
    return 0.5 - 0.5 * a * b


@nb.njit(cache=True, nogil=True)
def _irradiance(px, py, pz, nx, ny, nz, sc):
    """Direct irradiance (RGB) at a surface point from the lamp and the sun, shadowed."""
    (rlo, rhi, blo, bhi, sph, lpts, lnrm, lpow, lda, win, sun, sun_E) = sc
    ex = ey = ez = 0.0
    ox, oy, oz = px + nx * EPS * 10, py + ny * EPS * 10, pz + nz * EPS * 10
    for k in range(lpts.shape[0]):
        vx, vy, vz = lpts[k, 0] - ox, lpts[k, 1] - oy, lpts[k, 2] - oz
        r2 = vx * vx + vy * vy + vz * vz
        r = math.sqrt(r2)
        lx, ly, lz = vx / r, vy / r, vz / r
        cs = lx * nx + ly * ny + lz * nz
        cl = -(lx * lnrm[k, 0] + ly * lnrm[k, 1] + lz * lnrm[k, 2])
        if cs <= 0.0 or cl <= 0.0:          # facing away, or behind the light
            continue
        if _occluded(ox, oy, oz, lx, ly, lz, r - EPS, blo, bhi, sph):
            continue
        g = cs * cl / max(r2, lda[k])
        ex += lpow[k, 0] * g
        ey += lpow[k, 1] * g
        ez += lpow[k, 2] * g
    cs = sun[0] * nx + sun[1] * ny + sun[2] * nz
    if cs > 0.0:
        te, face = _room_exit(ox, oy, oz, sun[0], sun[1], sun[2], rlo, rhi)
        if face == 0:
            hy, hz = oy + te * sun[1], oz + te * sun[2]
            if win[0] <= hy <= win[1] and win[2] <= hz <= win[3]:
                if not _occluded(ox, oy, oz, sun[0], sun[1], sun[2], te, blo, bhi, sph):
                    ex += sun_E[0] * cs
                    ey += sun_E[1] * cs
                    ez += sun_E[2] * cs
    return ex, ey, ez


@nb.njit(cache=True, nogil=True)
def _inside(ox, oy, oz, blo, bhi, sph):
    """(kind, index) of the solid object containing the point, kind 0 if none."""
    for b in range(blo.shape[0]):
        if (blo[b, 0] < ox < bhi[b, 0]) and (blo[b, 1] < oy < bhi[b, 1]) and (blo[b, 2] < oz < bhi[b, 2]):
            return 1, b
    for s in range(sph.shape[0]):
        qx, qy, qz = ox - sph[s, 0], oy - sph[s, 1], oz - sph[s, 2]
        if qx * qx + qy * qy + qz * qz < sph[s, 3] * sph[s, 3]:
            return 2, s
    return 0, -1


@nb.njit(cache=True, parallel=True)
def _render(pos, dirs, pix, sc, look, out):
    """Ray-cast every probe texel.

    pos (n, 3) f64; dirs (T, 3) f64 unit; pix: a texel's angular size (rad);
    sc: geometry + lights tuple (see :meth:`Field._arrays`); look: materials
    and sky tuple; out (n, T, 3) f32, written."""
    (rlo, rhi, blo, bhi, sph, _, _, _, _, win, sun, _) = sc
    (wall_alb, floor_alb, tile, box_alb, sph_alb, amb, lamp_rect, lamp_L, sky_h, sky_z, sky_g, glow,
     glow_p) = look
    inv_pi = 1.0 / math.pi
    for p in nb.prange(pos.shape[0]):
        ox, oy, oz = pos[p, 0], pos[p, 1], pos[p, 2]
        kin, kidx = _inside(ox, oy, oz, blo, bhi, sph)
        if kin != 0:
            for c in range(3):
                a = box_alb[kidx, c] if kin == 1 else sph_alb[kidx, c]
                v = np.float32(a * amb[c])
                for k in range(dirs.shape[0]):
                    out[p, k, c] = v
            continue
        for k in range(dirs.shape[0]):
            dx, dy, dz = dirs[k, 0], dirs[k, 1], dirs[k, 2]
            te, face = _room_exit(ox, oy, oz, dx, dy, dz, rlo, rhi)
            t, kind, idx, nx, ny, nz = _hit_objects(ox, oy, oz, dx, dy, dz, te, blo, bhi, sph)
            hx, hy, hz = ox + t * dx, oy + t * dy, oz + t * dz
            r = g = b = 0.0
            if kind == 1:
                ar, ag, ab = box_alb[idx, 0], box_alb[idx, 1], box_alb[idx, 2]
            elif kind == 2:
                ar, ag, ab = sph_alb[idx, 0], sph_alb[idx, 1], sph_alb[idx, 2]
            else:
                # a wall; the lamp and the window are holes in it
                if face == 2 and lamp_rect[0] <= hx <= lamp_rect[1] and lamp_rect[2] <= hz <= lamp_rect[3]:
                    out[p, k, 0], out[p, k, 1], out[p, k, 2] = lamp_L[0], lamp_L[1], lamp_L[2]
                    continue
                if face == 0 and win[0] <= hy <= win[1] and win[2] <= hz <= win[3]:
                    # the sky, seen through the window
                    if dy >= 0.0:
                        h = dy ** 0.5
                        r = sky_h[0] + (sky_z[0] - sky_h[0]) * h
                        g = sky_h[1] + (sky_z[1] - sky_h[1]) * h
                        b = sky_h[2] + (sky_z[2] - sky_h[2]) * h
                    else:
                        r, g, b = sky_g[0], sky_g[1], sky_g[2]
                    cs = max(0.0, dx * sun[0] + dy * sun[1] + dz * sun[2])
                    s = cs ** glow_p
                    out[p, k, 0] = r + glow[0] * s
                    out[p, k, 1] = g + glow[1] * s
                    out[p, k, 2] = b + glow[2] * s
                    continue
                nx = ny = nz = 0.0
                if face == 0:
                    nx = -1.0
                elif face == 1:
                    nx = 1.0
                elif face == 2:
                    ny = -1.0
                elif face == 3:
                    ny = 1.0
                elif face == 4:
                    nz = -1.0
                else:
                    nz = 1.0
                if face == 3:
                    w = t * pix / max(abs(dy), 0.05) / tile
                    m = _filtered_checker(hx / tile, hz / tile, w)
                    ar = floor_alb[0, 0] + (floor_alb[1, 0] - floor_alb[0, 0]) * m
                    ag = floor_alb[0, 1] + (floor_alb[1, 1] - floor_alb[0, 1]) * m
                    ab = floor_alb[0, 2] + (floor_alb[1, 2] - floor_alb[0, 2]) * m
                else:
                    ar, ag, ab = wall_alb[face, 0], wall_alb[face, 1], wall_alb[face, 2]
            er, eg, eb = _irradiance(hx, hy, hz, nx, ny, nz, sc)
            out[p, k, 0] = ar * (amb[0] + er * inv_pi)
            out[p, k, 1] = ag * (amb[1] + eg * inv_pi)
            out[p, k, 2] = ab * (amb[2] + eb * inv_pi)


# ------------------------------------------------------------------------ API
def _rect_samples(rect, S, axes, fixed_axis, fixed_value) -> np.ndarray:
    """(S*S, 3) centres of an S x S stratification of an axis-aligned rectangle
    ``rect`` = (a0, a1, b0, b1) spanning world ``axes``, at ``fixed_value`` on the other axis."""
    u = (np.arange(S) + 0.5) / S
    ga, gb = np.meshgrid(rect[0] + u * (rect[1] - rect[0]), rect[2] + u * (rect[3] - rect[2]), indexing="ij")
    out = np.empty((S * S, 3))
    out[:, axes[0]], out[:, axes[1]], out[:, fixed_axis] = ga.ravel(), gb.ravel(), fixed_value
    return out


@dataclass(frozen=True)
class Field:
    """The interior scene for one seed; :meth:`render` makes probes.

    Parameters
    ----------
    seed : int
        Jitters sphere centres (``SPHERE_JITTER``) and sphere colours; 0 is
        the reference scene.
    """
    seed: int = 0

    def _arrays(self):
        rng = np.random.default_rng(self.seed)
        sph = SPHERES.copy()
        sph[:, :3] += rng.uniform(-SPHERE_JITTER, SPHERE_JITTER, size=(len(sph), 3))
        sph[:, 1] = np.maximum(sph[:, 1], sph[:, 3])          # rest on or above the floor
        sph_alb = rng.uniform(0.15, 0.85, size=(len(sph), 3))
        # area lights as point samples: the lamp (emitting down) and the window
        # (the sky's light, emitting into the room, -x)
        lamp = _rect_samples(LAMP_RECT, LAMP_SAMPLES, (0, 2), 1, ROOM_HI[1] - 1e-3)
        win = _rect_samples(WINDOW_RECT, WINDOW_SAMPLES, (1, 2), 0, ROOM_HI[0] - 1e-3)
        dA_lamp = (LAMP_RECT[1] - LAMP_RECT[0]) * (LAMP_RECT[3] - LAMP_RECT[2]) / len(lamp)
        dA_win = (WINDOW_RECT[1] - WINDOW_RECT[0]) * (WINDOW_RECT[3] - WINDOW_RECT[2]) / len(win)
        lpts = np.concatenate([lamp, win])
        lnrm = np.concatenate([np.tile([0.0, -1.0, 0.0], (len(lamp), 1)), np.tile([-1.0, 0.0, 0.0], (len(win), 1))])
        lpow = np.concatenate([np.tile(LAMP_RADIANCE * dA_lamp, (len(lamp), 1)),
                               np.tile(WINDOW_RADIANCE * dA_win, (len(win), 1))])
        lda = np.concatenate([np.full(len(lamp), dA_lamp), np.full(len(win), dA_win)])
        f64 = np.float64
        sc = (ROOM_LO.astype(f64), ROOM_HI.astype(f64), np.ascontiguousarray(BOXES[:, 0], f64),
              np.ascontiguousarray(BOXES[:, 1], f64), np.ascontiguousarray(sph, f64), lpts, lnrm, lpow,
              lda, WINDOW_RECT.astype(f64), SUN_DIR.astype(f64), SUN_IRRADIANCE.astype(f64))
        look = (WALL_ALBEDO.astype(f64), FLOOR_ALBEDO.astype(f64), float(CHECKER_TILE),
                BOX_ALBEDO.astype(f64), np.ascontiguousarray(sph_alb, f64), AMBIENT.astype(f64),
                LAMP_RECT.astype(f64), LAMP_RADIANCE.astype(f64), SKY_HORIZON.astype(f64),
                SKY_ZENITH.astype(f64), SKY_GROUND.astype(f64), SUN_GLOW.astype(f64), float(SUN_GLOW_POWER))
        return sc, look

    def render(self, positions, res: int) -> np.ndarray:
        """Probes at ``positions``.

        Parameters
        ----------
        positions : (n, 3) float
            Probe centres (world units, inside ``ROOM_LO``..``ROOM_HI``).
        res : int
            Face resolution R.

        Returns
        -------
        faces : (n, 6, R, R, 3) float32
            Linear radiance, DESIGN-NOTES §1 layout.
        """
        R = int(res)
        pos = np.ascontiguousarray(np.asarray(positions, np.float64).reshape(-1, 3))
        dirs = np.ascontiguousarray(texel_directions(R).reshape(-1, 3))
        out = np.empty((pos.shape[0], dirs.shape[0], 3), np.float32)
        sc, look = self._arrays()
        pix = (math.pi / 2.0) / R
        if pos.shape[0]:
            _render(pos, dirs, pix, sc, look, out)
        return out.reshape(pos.shape[0], 6, R, R, 3)


def _bounds(lo, hi):
    lo = GRID_LO if lo is None else np.asarray(lo, np.float64)
    hi = GRID_HI if hi is None else np.asarray(hi, np.float64)
    return np.asarray(lo, np.float64).copy(), np.asarray(hi, np.float64).copy()


def field_probes(grid_shape, res: int, *, lo=None, hi=None, seed: int = 0, dtype=np.float16) -> ProbeSet:
    """A grid probe set of the interior field, in memory (small sets).

    Parameters
    ----------
    grid_shape : (3,) int
        Probes along x, y, z (DESIGN-NOTES §2 order, z fastest).
    res : int
        Face resolution R.
    lo, hi : (3,) float, optional
        First and last probe centre per axis (default ``GRID_LO``/``GRID_HI``).
    seed : int
        Scene variant (:class:`Field`).
    dtype : float16 or float32
        Dtype of ``faces`` (float16, as stored, by default).

    Returns
    -------
    ProbeSet with ``faces`` (P, 6, R, R, 3) ``dtype``, ``grid_shape``, ``lo``, ``hi``.
    """
    lo, hi = _bounds(lo, hi)
    shape = tuple(int(v) for v in grid_shape)
    pos = ProbeSet.grid(lo, hi, shape)
    field = Field(seed)
    faces = np.empty((pos.shape[0], 6, res, res, 3), np.dtype(dtype))
    for start in range(0, pos.shape[0], BLOCK_PROBES):
        stop = min(start + BLOCK_PROBES, pos.shape[0])
        faces[start:stop] = field.render(pos[start:stop], res)
    return ProbeSet(pos, faces, shape, lo, hi, source=f"benchmarks.fields(seed={seed})")


def _writer(path, positions, res, dtype, shape, lo, hi, chunk_probes):
    """The project's streaming writer (``probewarp.baker.probewriter``)."""
    from probewarp.baker.probewriter import ZarrProbeWriter
    return ZarrProbeWriter(path, positions, res, dtype=dtype, grid_shape=shape, lo=lo, hi=hi,
                           chunk_probes=chunk_probes)


def write_field_zarr(path, grid_shape, res: int, *, lo=None, hi=None, chunk_probes: int | None = None,
                     block_probes: int = BLOCK_PROBES, seed: int = 0, dtype=np.float16,
                     progress: Callable[[int, int], None] | None = None) -> Path:
    """Stream a grid probe set of the interior field into a ``.zarr`` store.

    Memory is bounded by one rendered block (``block_probes`` probes, float32)
    plus the writer's one-chunk buffer and the ``(P, 3)`` positions; the store
    is written atomically (nothing at ``path`` until every probe is in).

    Parameters
    ----------
    path : str or Path
        A directory ending ``.zarr`` (replaced if it is a zarr store).
    grid_shape, res, lo, hi, seed, dtype
        As :func:`field_probes`; the store equals it probe for probe.
    chunk_probes : int, optional
        Probes per zarr chunk (default: the writer's, as ``ProbeSet.save``).
    block_probes : int
        Probes rendered per block.
    progress : callable(done, total), optional
        Called after each block.

    Returns
    -------
    Path of the store.
    """
    lo, hi = _bounds(lo, hi)
    shape = tuple(int(v) for v in grid_shape)
    pos = ProbeSet.grid(lo, hi, shape)
    P = pos.shape[0]
    field = Field(seed)
    block_probes = max(1, int(block_probes))
    with _writer(path, pos, res, dtype, shape, lo, hi, chunk_probes) as w:
        for start in range(0, P, block_probes):
            stop = min(start + block_probes, P)
            w.write(start, field.render(pos[start:stop], res))
            if progress is not None:
                progress(stop, P)
    return Path(path)
