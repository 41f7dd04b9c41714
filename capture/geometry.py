"""Scene geometry for the capturer: vertex buffer, culling chunks, draw commands.

The scene's triangle soup becomes one indexed vertex buffer
(:func:`indexed`, rows of :data:`VERTEX_ATTRIBUTES`) whose triangles are cut
into spatially compact chunks (:class:`Chunks`, Morton order of centroids).
For each batch of probes :meth:`Chunks.draws` orders the chunks near to far
from the batch's centre (the early depth test rejects more) and writes one
``DrawElementsIndirectCommand`` per run of consecutive chunks whose bounding
sphere meets a (probe, face) frustum (:func:`visible_chunks`,
:func:`draw_commands`); base instance = tile, as ``capture/shaders/capture.vs``
reads it. Used by :class:`probewarp.capture.capturer.Capturer`; no GL here.

Notes
-----
Left out on purpose: occlusion culling and level of detail (the chunk test is
frustum-only, conservative: the image is the same with and without it), and
per-chunk bounding boxes (a sphere test is cheaper and tight enough for chunks
of :data:`CHUNK_TRIANGLES` triangles).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probewarp.baker.cubemap import MAJOR, U_AXIS, V_AXIS

#: Triangles per culling chunk: every (probe, face) draws only the chunks whose
#: bounding sphere meets its frustum (one indirect command per run of chunks).
CHUNK_TRIANGLES = 16
#: At most this many chunks (larger scenes get larger chunks): bounds the
#: per-batch culling work and the number of draw commands.
MAX_CHUNKS = 2048
#: The scene vertex buffer's interleaved attributes (name, float count): 48 bytes.
VERTEX_ATTRIBUTES = (("in_position", 3), ("in_normal", 3), ("in_color", 3), ("in_uv", 2),
                     ("in_layer", 1))


def indexed(scene):
    """Deduplicate the soup of a :class:`~probewarp.capture.scene.Scene`.

    Returns
    -------
    vertices : (U, 12) float32
        Rows of :data:`VERTEX_ATTRIBUTES` (position, normal, colour, uv, layer).
    indices : (3T,) int32
    """
    attrs = np.concatenate([scene.positions, scene.normals, scene.colors, scene.uvs,
                            scene.layers[:, None].astype(np.float32)], axis=1)
    verts, inv = np.unique(attrs, axis=0, return_inverse=True)
    return np.ascontiguousarray(verts, np.float32), inv.reshape(-1).astype(np.int32)


def vertex_format(prog):
    """moderngl buffer format of the scene vertices for ``prog``: attributes the
    compiler removed (unlit has no normals) become padding.

    Returns
    -------
    format : str, names : list of str
    """
    fmt, names = [], []
    for name, n in VERTEX_ATTRIBUTES:
        if name in prog:
            fmt.append(f"{n}f")
            names.append(name)
        else:
            fmt.append(f"{4 * n}x")
    return " ".join(fmt), names


def chunks(verts: np.ndarray, idx: np.ndarray, size: int):
    """Spatially coherent chunks of triangles (Morton order of centroids).

    Parameters
    ----------
    verts : (U, 12) float32
        Vertex rows, position first.
    idx : (3T,) int32
    size : int
        Triangles per chunk (the last one may have fewer).

    Returns
    -------
    tris : (T, 3) int32
        Triangles (vertex indices), chunk by chunk.
    bounds : (C + 1,) int64
        Chunk ``k`` is ``tris[bounds[k]:bounds[k + 1]]``.
    centre : (C, 3) float64, radius : (C,) float64
        Bounding spheres (centre of the chunk's bounding box).
    """
    tri = idx.reshape(-1, 3)
    p = verts[:, :3].astype(np.float64)[tri]                     # (T, 3, 3)
    c = p.mean(1)
    lo, hi = c.min(0), c.max(0)
    q = ((c - lo) / np.maximum(hi - lo, 1e-12) * 1023).astype(np.int64)
    code = np.zeros(len(c), np.int64)
    for bit in range(10):
        for a in range(3):
            code |= ((q[:, a] >> bit) & 1) << (3 * bit + a)
    order = np.argsort(code, kind="stable")
    tri, p = tri[order], p[order]
    bounds = np.append(np.arange(0, len(tri), size), len(tri))
    starts = bounds[:-1]
    centre = 0.5 * (np.minimum.reduceat(p.min(1), starts) + np.maximum.reduceat(p.max(1), starts))
    owner = np.repeat(np.arange(len(starts)), np.diff(bounds))
    dist = np.linalg.norm(p - centre[owner][:, None, :], axis=-1).max(1)
    radius = np.maximum.reduceat(dist, starts)
    return np.ascontiguousarray(tri, np.int32), bounds, centre, radius


def visible_chunks(pos, centre, radius, near, slab: int = 128):
    """Which chunk spheres meet which probe face's frustum.

    Conservative: a sphere is kept unless it lies wholly behind one of the
    face's four side planes (``w +- x = 0``, ``w +- y = 0``) or its near plane.

    Parameters
    ----------
    pos : (B, 3) float
    centre : (C, 3) float, radius : (C,) float
    near : float
    slab : int
        Probes per step (bounds the temporaries to ``slab * C * 6`` floats).

    Returns
    -------
    (B * 6, C) bool
        Row ``6 b + f`` for probe ``b``, face ``f``.
    """
    pos = np.asarray(pos, np.float64)
    axes = np.concatenate([MAJOR, U_AXIS, V_AXIS])                       # (18, 3)
    cp = centre @ axes.T                                                 # (C, 18)
    r = np.sqrt(2.0) * radius[:, None]
    out = np.empty((len(pos), 6, len(centre)), bool)
    for s in range(0, len(pos), slab):
        d = cp[None] - (pos[s:s + slab] @ axes.T)[:, None, :]            # (b, C, 18)
        dm, du, dv = d[..., 0:6], d[..., 6:12], d[..., 12:18]
        vis = ((dm + du >= -r[None]) & (dm - du >= -r[None]) & (dm + dv >= -r[None])
               & (dm - dv >= -r[None]) & (dm >= near - radius[None, :, None]))
        out[s:s + slab] = vis.transpose(0, 2, 1)
    return out.reshape(-1, len(centre))


def draw_commands(vis, first, count):
    """Indirect draw commands for visible chunks, runs of chunks merged.

    Parameters
    ----------
    vis : (N, C) bool
        Instance (tile) ``i`` draws chunk ``k`` (chunks in index-buffer order).
    first, count : (C,) int
        Each chunk's first index and index count in the index buffer.

    Returns
    -------
    (M, 5) uint32
        ``DrawElementsIndirectCommand`` rows: count, instanceCount (1),
        firstIndex, baseVertex (0), baseInstance (the tile).
    """
    N, C = vis.shape
    v = np.zeros((N, C + 2), np.int8)
    v[:, 1:-1] = vis
    edge = np.diff(v, axis=1)                         # +1 run start, -1 one past its end
    si, sk = np.nonzero(edge == 1)
    ei, ek = np.nonzero(edge == -1)                   # same row order, paired
    cmd = np.zeros((len(si), 5), np.uint32)
    start = first[sk]
    stop = first[ek - 1] + count[ek - 1]
    cmd[:, 0] = stop - start
    cmd[:, 1] = 1
    cmd[:, 2] = start
    cmd[:, 4] = si
    return cmd


@dataclass(frozen=True)
class Chunks:
    """A scene's triangles in culling chunks (the output of :func:`chunks`).

    Attributes
    ----------
    tris : (T, 3) int32, chunk by chunk
    bounds : (C + 1,) int64, chunk ``k`` is ``tris[bounds[k]:bounds[k + 1]]``
    centre : (C, 3) float64, radius : (C,) float64, bounding spheres
    """
    tris: np.ndarray
    bounds: np.ndarray
    centre: np.ndarray
    radius: np.ndarray

    @classmethod
    def build(cls, verts: np.ndarray, idx: np.ndarray) -> "Chunks":
        """Chunks of :data:`CHUNK_TRIANGLES` triangles, larger if there would
        be more than :data:`MAX_CHUNKS` of them."""
        size = max(CHUNK_TRIANGLES, -(-(len(idx) // 3) // MAX_CHUNKS))
        return cls(*chunks(verts, idx, size))

    def draws(self, pos: np.ndarray, near: float, cull: bool = True):
        """Index buffer and draw commands for one batch of probes.

        Parameters
        ----------
        pos : (B, 3) float, the batch's probe centres
        near : float, the probe faces' near plane
        cull : bool
            Per (probe, face) only the chunks its frustum meets; False: all.

        Returns
        -------
        tris : (T, 3) int32
            The triangles, chunks near to far from the batch's centre.
        cmd : (M, 5) uint32
            :func:`draw_commands` into that index order.
        """
        bounds = self.bounds
        order = np.argsort(np.linalg.norm(self.centre - pos.mean(0), axis=1), kind="stable")
        n_tri = np.diff(bounds)[order]
        # triangle rows of the chunks in that order, as one gather
        start = np.repeat(bounds[:-1][order] - np.concatenate([[0], np.cumsum(n_tri)[:-1]]), n_tri)
        rows = np.arange(int(n_tri.sum())) + start
        tris = np.ascontiguousarray(self.tris[rows])
        count = 3 * n_tri
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        if cull:
            vis = visible_chunks(pos, self.centre[order], self.radius[order], near)
        else:
            vis = np.ones((6 * len(pos), len(order)), bool)
        return tris, draw_commands(vis, first, count)
