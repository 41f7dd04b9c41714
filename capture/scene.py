"""Scenes for probe capture: a triangle soup ready for GL.

A :class:`Scene` is flat arrays, three vertices per triangle, no index buffer:

=============  ===================  =========================================
``positions``  (V, 3) float32       world units, ``V = 3 T``
``normals``    (V, 3) float32       unit shading normals
``colors``     (V, 3) float32       linear RGB albedo factor, in [0, 1]
``uvs``        (V, 2) float32       texture coordinates (GL: v = 0 at bottom)
``layers``     (V,) int32           texture layer, 0 = untextured (white)
``textures``   (L, S, S, 3) f16     linear RGB, layer 0 is all ones
=============  ===================  =========================================

The albedo of a surface point is ``colors * textures[layer](uv)``: factors
and textures multiply, as in glTF. All material textures of a file share one
texture *array* (every image resized to ``S x S``), so repeat-wrapped UVs keep
working and a scene is one vertex buffer and one texture.

Sources: :meth:`Scene.load` (OBJ, glTF/GLB, anything ``trimesh`` reads) and
:meth:`Scene.builtin` (a procedural town square generated in code).

Notes
-----
Left out on purpose: emissive materials, transparency / alpha cut-outs,
specular and metallic terms (capture shades Lambertian only), per-material
double-sidedness (the capture shades both sides of every triangle), and
texture detail beyond ``texture_size`` (a light probe of R <= 64 texels per
face never resolves it). ``trimesh`` stores material colours as 8-bit, so a
loaded factor colour is exact to 1/255 only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Side of every texture layer of a loaded scene (resized, power of two).
TEXTURE_SIZE = 256
#: A loaded mesh without file normals is smoothed across edges whose faces
#: differ by less than this angle (degrees), hard beyond.
CREASE_ANGLE_DEG = 30.0


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear: same shape, float32."""
    c = np.asarray(c, np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


@dataclass
class Scene:
    """A triangle soup with materials, ready for GL.

    Attributes
    ----------
    positions : (V, 3) float32
        ``V = 3 T`` vertices, triangle ``k`` is rows ``3k .. 3k+2``.
    normals : (V, 3) float32
        Unit shading normals (the capture flips them toward the viewer, so
        their sign does not matter).
    colors : (V, 3) float32
        Linear RGB albedo factor.
    uvs : (V, 2) float32
        Texture coordinates, GL convention (``v = 0`` is the image's bottom
        row), repeat-wrapped.
    layers : (V,) int32
        Index into ``textures``; 0 is the white layer (untextured).
    textures : (L, S, S, 3) float16
        Linear RGB texture layers, row 0 = ``v = 0``; ``textures[0] == 1``.
    name : str
    shadow_bounds : (2, 3) float32 or None
        The box the sun's shadow map covers; ``None`` means :attr:`bounds`.
        Geometry outside it is lit, never shadowed.
    """
    positions: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    uvs: np.ndarray
    layers: np.ndarray
    textures: np.ndarray
    name: str = "scene"
    shadow_bounds: np.ndarray | None = field(default=None)

    def __post_init__(self):
        self.positions = np.ascontiguousarray(self.positions, np.float32).reshape(-1, 3)
        V = self.positions.shape[0]
        if V % 3:
            raise ValueError(f"a triangle soup needs 3 vertices per triangle, got {V}")
        self.normals = np.ascontiguousarray(self.normals, np.float32).reshape(V, 3)
        self.colors = np.ascontiguousarray(self.colors, np.float32).reshape(V, 3)
        self.uvs = np.ascontiguousarray(self.uvs, np.float32).reshape(V, 2)
        self.layers = np.ascontiguousarray(self.layers, np.int32).reshape(V)
        self.textures = np.ascontiguousarray(self.textures, np.float16)
        if self.textures.ndim != 4 or self.textures.shape[1] != self.textures.shape[2] \
                or self.textures.shape[3] != 3 or self.textures.shape[0] < 1:
            raise ValueError(f"textures must be (L, S, S, 3), got {self.textures.shape}")
        if V and (self.layers.min() < 0 or self.layers.max() >= self.textures.shape[0]):
            raise ValueError("layers index outside textures")
        for k in ("positions", "normals", "colors", "uvs"):
            if not np.isfinite(getattr(self, k)).all():
                raise ValueError(f"{k} has non-finite values")
        if self.shadow_bounds is not None:
            self.shadow_bounds = np.asarray(self.shadow_bounds, np.float32).reshape(2, 3)

    # ------------------------------------------------------------------ info
    @property
    def n_triangles(self) -> int:
        return self.positions.shape[0] // 3

    @property
    def bounds(self) -> np.ndarray:
        """``(2, 3)`` float32: min and max corner of all vertices (zeros if empty)."""
        if not len(self.positions):
            return np.zeros((2, 3), np.float32)
        return np.stack([self.positions.min(0), self.positions.max(0)])

    def __repr__(self):
        lo, hi = self.bounds
        return (f"Scene({self.name!r}, {self.n_triangles} triangles, "
                f"{self.textures.shape[0] - 1} textures, bounds {lo.round(2)}..{hi.round(2)})")

    # ----------------------------------------------------------- builders
    @classmethod
    def from_triangles(cls, positions, colors, normals=None, uvs=None, layers=None,
                       textures=None, name="scene", shadow_bounds=None) -> "Scene":
        """A scene from per-vertex arrays, filling in what is missing.

        Parameters
        ----------
        positions : (T, 3, 3) or (3T, 3) float
        colors : (3,) or (T, 3) per triangle or (3T, 3) per vertex, linear RGB
        normals : (3T, 3) float or None
            ``None``: flat face normals.
        uvs, layers, textures
            As the attributes; default untextured.
        """
        p = np.asarray(positions, np.float32).reshape(-1, 3)
        V = len(p)
        c = np.asarray(colors, np.float32)
        if c.shape == (3,):
            c = np.broadcast_to(c, (V, 3))
        elif c.ndim == 2 and len(c) != V and len(c) == V // 3:
            c = np.repeat(c, 3, axis=0)            # per triangle
        if normals is None:
            normals = _face_normals_soup(p)
        if uvs is None:
            uvs = np.zeros((V, 2), np.float32)
        if layers is None:
            layers = np.zeros(V, np.int32)
        if textures is None:
            textures = np.ones((1, 1, 1, 3), np.float16)
        return cls(p, normals, c, uvs, layers, textures, name=name, shadow_bounds=shadow_bounds)

    @classmethod
    def load(cls, path, texture_size: int = TEXTURE_SIZE) -> "Scene":
        """Read a mesh file (OBJ, glTF, GLB, PLY, ... whatever ``trimesh`` reads).

        Node transforms are applied. Per material: the factor colour
        (OBJ ``Kd``, glTF ``baseColorFactor``, via ``main_color``) goes to
        ``colors`` as linear RGB; a base-colour image (OBJ ``map_Kd``, glTF
        ``baseColorTexture``) becomes one texture layer, decoded from sRGB.
        Per-vertex colours (``ColorVisuals``) are taken as linear.

        Parameters
        ----------
        path : str or Path
        texture_size : int
            Side every texture image is resized to (a power of two).

        Returns
        -------
        Scene

        Notes
        -----
        OBJ with ``map_Kd``: the texture alone gives the albedo (``Kd`` is
        ignored, as most OBJ viewers do); glTF: factor times texture (spec).
        Normals from the file are kept (transformed by the inverse transpose);
        otherwise each corner averages the faces around its vertex that lie
        within :data:`CREASE_ANGLE_DEG` of its own face (hard edges beyond).
        """
        import trimesh

        path = Path(path)
        sc = trimesh.load(str(path), force="scene")
        parts = []
        tex_layers = [np.ones((texture_size, texture_size, 3), np.float16)]
        tex_ids: dict[int, int] = {}
        for node in sc.graph.nodes_geometry:
            transform, gname = sc.graph[node]
            mesh = sc.geometry[gname]
            if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
                continue
            parts.append(_mesh_to_soup(mesh, transform, tex_layers, tex_ids, texture_size))
        if parts:
            arrays = [np.concatenate([p[k] for p in parts]) for k in range(5)]
        else:
            arrays = [np.zeros((0, 3), np.float32)] * 3 + [np.zeros((0, 2), np.float32),
                                                           np.zeros(0, np.int32)]
        textures = np.stack(tex_layers) if len(tex_layers) > 1 else np.ones((1, 1, 1, 3), np.float16)
        return cls(*arrays, textures=textures, name=path.stem)

    @classmethod
    def from_spec(cls, spec) -> "Scene":
        """``"builtin"`` or ``"builtin:SEED"`` -> :meth:`builtin`, anything else
        -> :meth:`load` (the command line's SCENE argument)."""
        text = str(spec)
        if text == "builtin" or text.startswith("builtin:"):
            _, _, seed = text.partition(":")
            try:
                return cls.builtin(seed=int(seed) if seed else 0)
            except ValueError:
                raise ValueError(f"builtin scene seed must be an integer, got {seed!r}") from None
        return cls.load(spec)

    @classmethod
    def builtin(cls, seed: int = 0) -> "Scene":
        """A procedural town square with geometry at every depth (no files).

        Layout (y up, ground at y = 0):

        * a paved plaza ``|x|, |z| <= 24`` with a two-tone checker, two
          coloured paths, a low fountain rim and benches (all below 0.5);
        * near: a colonnade of pillars (7 high) along the plaza's edge at
          ``|x|`` or ``|z|`` = 21, low walls between some, and a pergola of
          beams at y = 7 over one quarter (striped sun shadows);
        * mid: about 30 buildings 30..90 units out, 5..32 high, stacked in
          differently coloured storeys, some with pyramid roofs;
        * far: fields to +-312 and two mountain rings (r ~ 300 and ~ 430,
          5..15 degrees above the horizon) with snow caps and bluish haze.

        The probe-safe box :meth:`builtin_grid` is free of geometry for every
        seed; ``seed`` varies building sizes, colours and the mountains.

        Returns
        -------
        Scene
            About 2,300 triangles; ``shadow_bounds`` covers the plaza and the
            buildings (the mountains are never shadowed).
        """
        return _build_town(np.random.default_rng(seed))

    @staticmethod
    def builtin_grid():
        """Suggested probe bounds inside :meth:`builtin`'s walkable plaza.

        Returns
        -------
        lo, hi : (3,) float32
            ``(-18, 0.6, -18)`` and ``(18, 5.4, 18)``: clear of pillars
            (|x|, |z| >= 20.6), beams (y >= 7) and street furniture
            (y <= 0.45) for every seed.
        """
        return (np.array([-18.0, 0.6, -18.0], np.float32),
                np.array([18.0, 5.4, 18.0], np.float32))


# ---------------------------------------------------------------------------
# loading helpers
# ---------------------------------------------------------------------------

def _face_normals_soup(p: np.ndarray) -> np.ndarray:
    tri = p.reshape(-1, 3, 3).astype(np.float64)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(ln > 0, n / np.maximum(ln, 1e-30), np.array([0.0, 1.0, 0.0]))
    return np.repeat(n, 3, axis=0).astype(np.float32)


def _image_to_layer(img, size: int) -> np.ndarray:
    """PIL image -> (size, size, 3) float16 linear, row 0 = bottom (v = 0)."""
    from PIL import Image

    img = img.convert("RGB").resize((size, size), Image.Resampling.BOX)
    a = np.asarray(img, np.float32) / 255.0
    return srgb_to_linear(a[::-1]).astype(np.float16)


def _crease_normals(faces: np.ndarray, fn: np.ndarray, area: np.ndarray, n_vertices: int,
                    crease_deg: float = CREASE_ANGLE_DEG) -> np.ndarray:
    """Per-corner normals smoothed over the faces around each vertex that lie
    within ``crease_deg`` of the corner's own face (hard edges beyond).

    Parameters
    ----------
    faces : (T, 3) int, fn : (T, 3) unit face normals, area : (T,) face areas

    Returns
    -------
    (3T, 3) float64, unit (the face normal where the sum vanishes)
    """
    import scipy.sparse as sp

    T = len(faces)
    corner_t = np.repeat(np.arange(T), 3)
    corner_v = faces.reshape(-1)
    ones = np.ones(3 * T)
    c2v = sp.csr_matrix((ones, (np.arange(3 * T), corner_v)), shape=(3 * T, n_vertices))
    v2f = sp.csr_matrix((ones, (corner_v, corner_t)), shape=(n_vertices, T))
    pairs = (c2v @ v2f).tocoo()                        # (corner, face sharing its vertex)
    keep = np.einsum("ij,ij->i", fn[corner_t[pairs.row]], fn[pairs.col]) \
        >= np.cos(np.radians(crease_deg))
    w = sp.csr_matrix((area[pairs.col[keep]], (pairs.row[keep], pairs.col[keep])), shape=(3 * T, T))
    n = np.asarray(w @ fn)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(ln > 1e-12, n / np.maximum(ln, 1e-300), fn[corner_t])


def _mesh_to_soup(mesh, transform, tex_layers, tex_ids, size):
    """One trimesh.Trimesh placed by ``transform`` (4, 4) -> the soup arrays
    (positions, normals, colors, uvs, layers)."""
    import trimesh

    faces = np.asarray(mesh.faces)
    T = len(faces)
    L, t = np.asarray(transform, np.float64)[:3, :3], np.asarray(transform, np.float64)[:3, 3]
    verts = np.asarray(mesh.vertices, np.float64) @ L.T + t
    tri = verts[faces]                                   # (T, 3, 3)
    cr = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(cr, axis=1)
    fn = cr / np.maximum(2.0 * area, 1e-300)[:, None]
    fn[area <= 0] = (0.0, 1.0, 0.0)
    # normals read from the file (trimesh keeps them in its cache; asking
    # ``vertex_normals`` otherwise computes smooth ones across every edge)
    if "vertex_normals" in mesh._cache:
        vn = np.asarray(mesh.vertex_normals, np.float64) @ np.linalg.inv(L)   # (L^-T n)^T
        nrm = vn[faces].reshape(-1, 3)
        ln = np.linalg.norm(nrm, axis=1, keepdims=True)
        nrm = nrm / np.maximum(ln, 1e-300)
        bad = ~np.isfinite(nrm).all(1) | (ln[:, 0] < 1e-12)
        nrm[bad] = np.repeat(fn, 3, axis=0)[bad]
    else:
        nrm = _crease_normals(faces, fn, area, len(verts))
    pos = tri.reshape(-1, 3)

    col = np.ones((3 * T, 3), np.float32)
    uv = np.zeros((3 * T, 2), np.float32)
    layer = np.zeros(3 * T, np.int32)
    vis = mesh.visual
    if isinstance(vis, trimesh.visual.ColorVisuals):
        if vis.kind == "face":
            col = np.repeat(np.asarray(vis.face_colors, np.float32)[:, :3], 3, axis=0) / 255.0
        elif vis.kind == "vertex":
            col = np.asarray(vis.vertex_colors, np.float32)[faces].reshape(-1, 4)[:, :3] / 255.0
    elif isinstance(vis, trimesh.visual.TextureVisuals):
        mat = vis.material
        image, factor, obj_style = None, None, False
        if isinstance(mat, trimesh.visual.material.PBRMaterial):
            image = mat.baseColorTexture
            factor = mat.baseColorFactor
        elif mat is not None:
            image = getattr(mat, "image", None)
            factor = mat.main_color
            obj_style = True
        if factor is not None:
            col[:] = np.asarray(factor, np.float32)[:3] / 255.0
        if image is not None and vis.uv is not None and len(vis.uv) == len(mesh.vertices):
            key = id(image)
            if key not in tex_ids:
                tex_ids[key] = len(tex_layers)
                tex_layers.append(_image_to_layer(image, size))
            layer[:] = tex_ids[key]
            uv = np.asarray(vis.uv, np.float32)[faces].reshape(-1, 2)
            if obj_style:
                col[:] = 1.0
    return (pos.astype(np.float32), nrm.astype(np.float32), col.astype(np.float32),
            uv.astype(np.float32), layer)


# ---------------------------------------------------------------------------
# the builtin town
# ---------------------------------------------------------------------------

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


def _build_town(rng) -> Scene:
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
