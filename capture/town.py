"""The built-in scene: a procedural town square with geometry at every depth.

:func:`build_town` is what :meth:`~probewarp.capture.scene.Scene.builtin`
returns (layout in its docstring): flat-shaded, per-vertex-coloured
triangles (:class:`_Builder`), about 2,300 of them, no textures, no files.
The probe-safe box :meth:`~probewarp.capture.scene.Scene.builtin_grid` is
free of geometry for every seed; the seed varies building sizes, colours and
the mountains.

Notes
-----
Left out on purpose: textures, smooth normals and anything curved beyond the
octagonal fountain (a light probe of a few texels per face does not resolve
them), and any change of the random stream's order (the seeds' scenes, and so
cached captures and test expectations, depend on it).
"""
from __future__ import annotations

import numpy as np

from probewarp.capture.scene import Scene


class _Builder:
    """Collects flat-shaded, per-vertex-coloured triangles."""

    def __init__(self):
        self.p, self.c = [], []

    def tri(self, a, b, c, col, col_b=None, col_c=None):
        self.p.append(np.array([a, b, c], np.float64))
        cb = col if col_b is None else col_b
        cc = col if col_c is None else col_c
        self.c.append(np.array([col, cb, cc], np.float64))

    def quad(self, a, b, c, d, col):
        self.tri(a, b, c, col)
        self.tri(a, c, d, col)

    def box(self, lo, hi, col, bottom=False, top_col=None):
        (x0, y0, z0), (x1, y1, z1) = lo, hi
        self.quad((x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1), col)  # +z
        self.quad((x1, y0, z0), (x0, y0, z0), (x0, y1, z0), (x1, y1, z0), col)  # -z
        self.quad((x1, y0, z1), (x1, y0, z0), (x1, y1, z0), (x1, y1, z1), col)  # +x
        self.quad((x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0), col)  # -x
        self.quad((x0, y1, z1), (x1, y1, z1), (x1, y1, z0), (x0, y1, z0),
                  col if top_col is None else top_col)                          # +y
        if bottom:
            self.quad((x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1), col)

    def scene(self, name, shadow_bounds):
        p = np.concatenate(self.p).astype(np.float32)
        c = np.clip(np.concatenate(self.c), 0.0, 1.0).astype(np.float32)
        return Scene.from_triangles(p, c, name=name, shadow_bounds=shadow_bounds)


def _jitter(rng, col, amount=0.08):
    col = np.asarray(col, np.float64)
    return np.clip(col * (1.0 + amount * rng.standard_normal(3)), 0.0, 1.0)


def build_town(rng: np.random.Generator) -> Scene:
    """The town square of :meth:`Scene.builtin <probewarp.capture.scene.Scene.builtin>`
    (its docstring gives the layout), random choices drawn from ``rng``."""
    b = _Builder()
    # --- plaza: 16 x 16 tiles of 3 units, checker + two coloured paths -----
    stone_a, stone_b = np.array([0.55, 0.50, 0.44]), np.array([0.30, 0.28, 0.26])
    path_x, path_z = np.array([0.62, 0.22, 0.14]), np.array([0.16, 0.26, 0.50])
    n, w, h0 = 16, 3.0, 24.0
    for i in range(n):
        for k in range(n):
            x0, z0 = -h0 + i * w, -h0 + k * w
            if k in (7, 8):
                col = path_x * (1.0 if (i % 2) else 0.8)
            elif i in (7, 8):
                col = path_z * (1.0 if (k % 2) else 0.8)
            else:
                col = stone_a if (i + k) % 2 == 0 else stone_b
            b.quad((x0, 0, z0), (x0, 0, z0 + w), (x0 + w, 0, z0 + w), (x0 + w, 0, z0), _jitter(rng, col, 0.04))
    # --- fields around the plaza: 13 x 13 cells of 48 units minus the centre --
    field_cols = [np.array(c) for c in ([0.16, 0.32, 0.08], [0.30, 0.40, 0.10], [0.55, 0.48, 0.20],
                                        [0.28, 0.20, 0.12], [0.12, 0.26, 0.10])]
    cell = 48.0
    for i in range(13):
        for k in range(13):
            if i == 6 and k == 6:
                continue
            x0, z0 = -312.0 + i * cell, -312.0 + k * cell
            col = _jitter(rng, field_cols[rng.integers(len(field_cols))], 0.1)
            b.quad((x0, 0, z0), (x0, 0, z0 + cell), (x0 + cell, 0, z0 + cell), (x0 + cell, 0, z0), col)
    # --- street furniture (below y = 0.5): fountain rim and benches ---------
    rim = np.array([0.70, 0.68, 0.62])
    for a in range(8):
        t0, t1 = 2 * np.pi * a / 8, 2 * np.pi * (a + 1) / 8
        p0 = np.array([3.0 * np.cos(t0), 0, 3.0 * np.sin(t0)])
        p1 = np.array([3.0 * np.cos(t1), 0, 3.0 * np.sin(t1)])
        b.quad(p0, p1, p1 + [0, 0.4, 0], p0 + [0, 0.4, 0], rim)
    water = np.array([0.05, 0.12, 0.18])
    for a in range(8):
        t0, t1 = 2 * np.pi * a / 8, 2 * np.pi * (a + 1) / 8
        b.tri((0, 0.3, 0), (3.0 * np.cos(t1), 0.3, 3.0 * np.sin(t1)), (3.0 * np.cos(t0), 0.3, 3.0 * np.sin(t0)), water)
    wood = np.array([0.45, 0.28, 0.14])
    for (x, z, along_x) in [(-10, -6, True), (10, 6, True), (-6, 10, False), (6, -10, False)]:
        hx, hz = (1.5, 0.3) if along_x else (0.3, 1.5)
        b.box((x - hx, 0, z - hz), (x + hx, 0.45, z + hz), _jitter(rng, wood))
    # --- near: colonnade at |x| or |z| = 21, low walls, pergola -------------
    pillar = np.array([0.80, 0.76, 0.68])
    ring = [-21.0, -15.0, -9.0, -3.0, 3.0, 9.0, 15.0, 21.0]
    posts = {(x, z) for x in ring for z in (-21.0, 21.0)} | {(x, z) for x in (-21.0, 21.0) for z in ring}
    for (x, z) in sorted(posts):
        b.box((x - 0.4, 0, z - 0.4), (x + 0.4, 7.0, z + 0.4), _jitter(rng, pillar, 0.05))
    wall = np.array([0.62, 0.36, 0.24])
    for (x, z) in sorted(posts):
        if rng.random() < 0.4 and abs(z) == 21.0 and x < 21.0:
            b.box((x + 0.4, 0, z - 0.2), (x + 5.6, 1.2, z + 0.2), _jitter(rng, wall))
        if rng.random() < 0.4 and abs(x) == 21.0 and z < 21.0:
            b.box((x - 0.2, 0, z + 0.4), (x + 0.2, 1.2, z + 5.6), _jitter(rng, wall))
    beam = np.array([0.35, 0.22, 0.12])
    for z in np.arange(-21.0, 0.0, 1.5):       # pergola over x in [-21, 0], z in [-21, 0]
        b.box((-21.4, 7.0, z - 0.15), (0.0, 7.3, z + 0.15), beam)
    b.box((-0.3, 6.7, -21.4), (0.3, 7.0, 0.3), beam)     # girder on the inner edge
    # --- mid: buildings 30..90 out, storeys of varied colour ---------------
    palette = [np.array(c) for c in ([0.85, 0.82, 0.75], [0.70, 0.35, 0.22], [0.80, 0.62, 0.30],
                                     [0.45, 0.52, 0.60], [0.60, 0.60, 0.55], [0.75, 0.55, 0.50])]
    roof_col = np.array([0.42, 0.16, 0.10])
    n_b = 32
    for j in range(n_b):
        ang = 2 * np.pi * (j + 0.5 * rng.random()) / n_b
        r = rng.uniform(34.0, 88.0)
        cx, cz = r * np.cos(ang), r * np.sin(ang)
        sx, sz = rng.uniform(6, 14), rng.uniform(6, 14)
        H = rng.uniform(5, 32)
        base = palette[rng.integers(len(palette))]
        storeys = int(rng.integers(1, 4))
        ys = np.linspace(0.0, H, storeys + 1)
        for s in range(storeys):
            col = _jitter(rng, base * (0.85 if s % 2 else 1.0), 0.06)
            b.box((cx - sx / 2, ys[s], cz - sz / 2), (cx + sx / 2, ys[s + 1], cz + sz / 2), col)
        if rng.random() < 0.5:
            apex = (cx, H + 0.35 * min(sx, sz), cz)
            c4 = [(cx - sx / 2, H, cz - sz / 2), (cx + sx / 2, H, cz - sz / 2),
                  (cx + sx / 2, H, cz + sz / 2), (cx - sx / 2, H, cz + sz / 2)]
            rc = _jitter(rng, roof_col)
            for q in range(4):
                b.tri(c4[q], c4[(q + 1) % 4], apex, rc)
    # --- far: two mountain rings ---------------------------------------------
    for (r_in, r_pk, h_lo, h_hi, col, haze, segs) in [
            (260.0, 300.0, 25.0, 70.0, np.array([0.22, 0.26, 0.16]), 0.15, 48),
            (380.0, 430.0, 60.0, 115.0, np.array([0.30, 0.36, 0.46]), 0.45, 40)]:
        heights = rng.uniform(h_lo, h_hi, segs)
        heights = 0.5 * heights + 0.25 * (np.roll(heights, 1) + np.roll(heights, -1))
        snow = np.array([0.92, 0.94, 0.98])
        tint = col * (1 - haze) + haze * np.array([0.55, 0.65, 0.80])
        for s in range(segs):
            t0, t1 = 2 * np.pi * s / segs, 2 * np.pi * (s + 1) / segs
            a0 = np.array([r_in * np.cos(t0), -1.0, r_in * np.sin(t0)])
            a1 = np.array([r_in * np.cos(t1), -1.0, r_in * np.sin(t1)])
            p0 = np.array([r_pk * np.cos(t0), heights[s], r_pk * np.sin(t0)])
            p1 = np.array([r_pk * np.cos(t1), heights[(s + 1) % segs], r_pk * np.sin(t1)])
            cap0 = snow if heights[s] > 0.8 * h_hi else tint
            cap1 = snow if heights[(s + 1) % segs] > 0.8 * h_hi else tint
            b.tri(a0, a1, p1, tint, tint, cap1)
            b.tri(a0, p1, p0, tint, cap1, cap0)
    shadow = np.array([[-100.0, -1.0, -100.0], [100.0, 45.0, 100.0]])
    return b.scene("builtin", shadow)
