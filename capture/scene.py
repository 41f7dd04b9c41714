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
:meth:`Scene.builtin` (a procedural town square generated in code by
:mod:`probewarp.capture.town`).

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
        from probewarp.capture.town import build_town

        return build_town(np.random.default_rng(seed))

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
