"""Probe capture: render HDR cubemaps of a :class:`~probewarp.capture.scene.Scene`.

Output is linear radiance in the layout of DESIGN-NOTES §1, ``(P, 6, R, R, 3)``
float32, rendered at ``R * supersample`` and box-filtered down with
:func:`probewarp.baker.cubemap.downsample_box`.

How it is fast (on llvmpipe as on a GPU): one draw call renders thousands of
probe faces. The render target is tiled into ``T x T`` squares (``T = R *
supersample``); tile ``i`` holds probe ``i // 6``, face ``i % 6``.
``capture/shaders/capture.vs`` computes the face's clip coordinates straight from the
cubemap convention (``x = dot(p - probe, U)``, ``y = dot(p - probe, V)``,
``w = dot(p - probe, MAJOR)``), clips to the face with
``gl_ClipDistance[0..3]`` and shifts the clip position into its tile. GL's
framebuffer row 0 is the bottom, which is the face's row ``t = 0`` (``tc = -1 +
1/R``): the read-back is in §1 order without flips. Face bases can be
left-handed, so back-face culling is off; depth testing is per texel, hence
per tile. The draw is one ``glMultiDrawElementsIndirect``: the scene is cut
into spatially compact chunks of :data:`CHUNK_TRIANGLES` triangles, and each
(probe, face) gets commands only for the runs of chunks whose bounding sphere
meets its frustum (base instance = tile, which the vertex shader reads from a
per-instance attribute); chunks are ordered near to far from the batch's
centre so the early depth test rejects more. The sky
(``capture/shaders/capture_sky.fs``) then fills the texels no geometry covered, with
depth test ``<=`` against the far plane. On 2 llvmpipe cores the vertex work
of the draw is the larger part of the time, the shading of the covered texels
the next.

Lighting (``lighting="lit"``): Lambertian albedo times the sun's direct light
(``Sky.sun_irradiance``, shadowed through an orthographic shadow map over the
scene's ``shadow_bounds``, hardware PCF) plus a hemispherical ambient from
the sky (cosine-weighted sky radiance for an upward normal, the ground's
bounce for a downward one, mixed by ``0.5 + 0.5 n.y``). ``lighting="unlit"``
writes the albedo itself (the sky is still drawn behind), for exact tests.

Notes
-----
Left out on purpose: interreflections beyond the one ambient bounce term,
ambient occlusion, specular, sky visibility in the ambient term (surfaces
under a roof still get the full sky ambient), shadows outside
``shadow_bounds``, and shading of geometry nearer than ``near`` to a probe
(clipped away: probes must not sit inside geometry). The sun disc is drawn
much larger than the real sun (so it survives low resolutions) and its
radiance and its lighting (``sun_irradiance``) are set independently.
Different tile positions of one face round clip coordinates differently, so a
capture depends on the batch size by a few ulps of coverage at triangle edges
(tests bound it).
"""
from __future__ import annotations

import contextlib
import importlib.resources

import numpy as np
import moderngl

from probewarp.baker.cubemap import MAJOR, U_AXIS, V_AXIS, downsample_box
from probewarp.baker.probeset import ProbeSet
from probewarp.runtime import shaders as _shaders
from probewarp.capture.scene import Scene
from probewarp.capture.sky import Sky

#: ``GL_CLIP_DISTANCE0`` (``+ i`` for plane i).
GL_CLIP_DISTANCE0 = 0x3000
#: ``GL_DEPTH_CLAMP``: shadow casters in front of the shadow map's near plane
#: keep casting (their depth clamps to 0).
GL_DEPTH_CLAMP = 0x864F
#: The capture room's GLSL (package data of probewarp.capture); their
#: ``#include "common_cubemap.glsl"`` resolves in probewarp.shaders.
SHADER_ROOT = importlib.resources.files("probewarp.capture") / "shaders"
#: Largest side of the capture render target in texels (a float32 RGBA target
#: of 4096^2 is 256 MiB); batches are sized to fit it.
MAX_TARGET_SIDE = 4096
#: Side of the sun's shadow map (depth 24 bit: 64 MiB at 4096).
SHADOW_MAP_SIZE = 4096
#: Up to this tile side (R * supersample) one hardware-PCF shadow tap per
#: texel suffices: a sub-texel is then coarser than a shadow-map texel in
#: typical scenes, and the box filter smooths edges; larger tiles take 4.
SHADOW_ONE_TAP_MAX_TILE = 64
#: Near plane of probe faces relative to the scene's bounding-box diagonal
#: (geometry closer than this to a probe is clipped away).
NEAR_RELATIVE = 1e-4
#: Triangles per culling chunk: every (probe, face) draws only the chunks whose
#: bounding sphere meets its frustum (one indirect command per run of chunks).
CHUNK_TRIANGLES = 16
#: At most this many chunks (larger scenes get larger chunks): bounds the
#: per-batch culling work and the number of draw commands.
MAX_CHUNKS = 2048
#: Shadow-map normal offset and depth bias, in shadow-map texels.
SHADOW_NORMAL_BIAS_TEXELS = 1.5
SHADOW_DEPTH_BIAS_TEXELS = 1.0


# ---------------------------------------------------------------------------
# grid helpers
# ---------------------------------------------------------------------------

def grid_positions(lo, hi, n) -> np.ndarray:
    """Probe centres of a regular grid in DESIGN-NOTES §2 order: (nx*ny*nz, 3)
    float32, z fastest. The one definition is :meth:`ProbeSet.grid`."""
    return ProbeSet.grid(lo, hi, n)


# ---------------------------------------------------------------------------
# the capturer
# ---------------------------------------------------------------------------

def _default_context():
    from probewarp.runtime.gl import create_context
    return create_context()


def _indexed(scene: Scene):
    """Deduplicate the soup into (vertices (U, 12) float32, indices (3T,) int32)."""
    attrs = np.concatenate([scene.positions, scene.normals, scene.colors, scene.uvs,
                            scene.layers[:, None].astype(np.float32)], axis=1)
    verts, inv = np.unique(attrs, axis=0, return_inverse=True)
    return np.ascontiguousarray(verts, np.float32), inv.reshape(-1).astype(np.int32)


def _chunks(verts: np.ndarray, idx: np.ndarray, size: int):
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


def _visible_chunks(pos, centre, radius, near, slab: int = 128):
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


def _draw_commands(vis, first, count):
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


def _light_matrices(sky: Sky, bounds: np.ndarray, size: int):
    """Orthographic sun view over ``bounds``: (clip (4, 4), tex (4, 4), texel world size)."""
    f = -sky.sun_direction                                  # direction light travels
    up = np.array([0.0, 1.0, 0.0]) if abs(f[1]) < 0.99 else np.array([1.0, 0.0, 0.0])
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    view = np.eye(4)
    view[0, :3], view[1, :3], view[2, :3] = r, u, f
    lo, hi = bounds
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    lc = corners @ view.T
    mn, mx = lc[:, :3].min(0), lc[:, :3].max(0)
    ext = np.maximum(mx - mn, 1e-6)
    mn, ext = mn - 0.01 * ext, ext * 1.02
    scale = np.eye(4)
    scale[:3, :3] = np.diag(2.0 / ext)
    scale[:3, 3] = -1.0 - 2.0 * mn / ext
    clip = scale @ view
    bias = np.array([[0.5, 0, 0, 0.5], [0, 0.5, 0, 0.5], [0, 0, 0.5, 0.5], [0, 0, 0, 1.0]])
    texel = float(max(ext[0], ext[1]) / size)
    return clip, bias @ clip, texel, float(ext[2])


#: The scene vertex buffer's interleaved attributes (name, float count): 48 bytes.
VERTEX_ATTRIBUTES = (("in_position", 3), ("in_normal", 3), ("in_color", 3), ("in_uv", 2),
                     ("in_layer", 1))


def _vertex_format(prog):
    """moderngl buffer format of the scene vertices for ``prog``: attributes the
    compiler removed (unlit has no normals) become padding."""
    fmt, names = [], []
    for name, n in VERTEX_ATTRIBUTES:
        if name in prog:
            fmt.append(f"{n}f")
            names.append(name)
        else:
            fmt.append(f"{4 * n}x")
    return " ".join(fmt), names


@contextlib.contextmanager
def _using(ctx: moderngl.Context, fbo):
    """Bind ``fbo``; afterwards bind again what was bound (the default
    framebuffer if moderngl tracked none), so that no released framebuffer of
    ours stays moderngl's notion of the bound one."""
    prev = ctx.fbo
    fbo.use()
    try:
        yield
    finally:
        (prev if prev is not None else ctx.detect_framebuffer(0)).use()


def _mat(m: np.ndarray) -> bytes:
    return np.ascontiguousarray(np.asarray(m, np.float32).T).tobytes()   # GLSL: column-major


class Capturer:
    """GL resources to capture one scene at one resolution, many times.

    Parameters
    ----------
    scene : Scene
    R : int
        Output face resolution.
    supersample : int
        Render at ``R * supersample`` and box-filter down.
    sky : Sky or None
        ``None``: ``Sky()``.
    lighting : {"lit", "unlit"}
        ``"unlit"`` writes the albedo (vertex colour x texture) of geometry.
    ctx : moderngl.Context or None
        ``None``: a headless context of :func:`probewarp.runtime.gl.create_context`,
        released with the capturer.
    near : float or None
        Near plane of the probe faces, world units (default
        :data:`NEAR_RELATIVE` x the scene's diagonal).
    shadow_size : int
        Side of the sun's shadow map.
    shadow_taps : {1, 4} or None
        Hardware-PCF taps per shadow lookup (4: a 3 x 3 tent). ``None``: 1
        up to a tile side of :data:`SHADOW_ONE_TAP_MAX_TILE`, else 4.
    cull : bool
        Draw for each (probe, face) only the chunks of
        :data:`CHUNK_TRIANGLES` triangles whose bounding sphere meets its
        frustum. Conservative: the image is the same either way.
    max_target_side : int
        Largest render-target side a default batch uses.

    Notes
    -----
    GL state it sets and leaves: ``DEPTH_TEST`` on, ``CULL_FACE`` and
    ``BLEND`` off, depth func ``<``, the viewport, polygon offset zero, the
    textures bound to units 0 and 1. The framebuffer binding is restored after
    each pass; clip distances and depth clamp are switched off again.
    """

    def __init__(self, scene: Scene, R: int, supersample: int = 4, sky: Sky | None = None,
                 lighting: str = "lit", ctx: moderngl.Context | None = None,
                 near: float | None = None, shadow_size: int = SHADOW_MAP_SIZE,
                 shadow_taps: int | None = None, cull: bool = True,
                 max_target_side: int = MAX_TARGET_SIDE):
        if lighting not in ("lit", "unlit"):
            raise ValueError(f"lighting must be 'lit' or 'unlit', got {lighting!r}")
        R, ss = int(R), int(supersample)
        if R < 1 or ss < 1:
            raise ValueError(f"R and supersample must be >= 1, got {R}, {ss}")
        self.scene, self.R, self.supersample = scene, R, ss
        self.tile = R * ss
        self.sky = Sky() if sky is None else sky
        self.lighting = lighting
        if shadow_taps is None:
            shadow_taps = 1 if R * ss <= SHADOW_ONE_TAP_MAX_TILE else 4
        if shadow_taps not in (1, 4):
            raise ValueError(f"shadow_taps must be 1 or 4, got {shadow_taps}")
        self.shadow_taps = int(shadow_taps)
        self.cull = bool(cull)
        self._own_ctx = ctx is None
        self.ctx = _default_context() if ctx is None else ctx
        self._max_side = min(int(self.ctx.info["GL_MAX_TEXTURE_SIZE"]),
                             int(self.ctx.info["GL_MAX_VIEWPORT_DIMS"][0]))
        if 3 * self.tile > self._max_side:       # at least 3 x 2 tiles: one probe
            raise ValueError(f"R * supersample = {self.tile} too large for this GL "
                             f"(max target side {self._max_side})")
        self.max_target_side = max(int(max_target_side), 3 * self.tile)
        lo, hi = scene.bounds
        diag = float(np.linalg.norm(hi - lo)) or 1.0
        self.near = float(near) if near is not None else max(NEAR_RELATIVE * diag, 1e-6)
        self._bounds = np.stack([lo, hi]).astype(np.float64)
        self._objs = []
        self._fbo = None
        self._fbo_key = None
        self._readback = None
        try:
            self._build(shadow_size)
        except Exception:
            self.release()
            raise

    # ----------------------------------------------------------- setup
    def _keep(self, obj):
        self._objs.append(obj)
        return obj

    def _build(self, shadow_size: int):
        ctx, scene = self.ctx, self.scene
        unlit = self.lighting == "unlit"
        self._prog = self._keep(_shaders.program(ctx, "capture.vs", "capture.fs", root=SHADER_ROOT,
                                                 defines={"LIGHTING_UNLIT": int(unlit),
                                                          "SHADOW_TAPS": self.shadow_taps}))
        self._sky_prog = self._keep(_shaders.program(
            ctx, "capture_sky.vs", "capture_sky.fs", root=SHADER_ROOT,
            defines={"SKY_GROUND_BLEND": float(Sky.GROUND_BLEND)}))
        self._sky_vao = self._keep(ctx.vertex_array(self._sky_prog, []))
        uni = self.sky._uniforms()
        for prog in (self._prog, self._sky_prog):
            for k, v in uni.items():
                if k in prog:
                    prog[k].value = v
        # albedo texture array (layer 0 white), trilinear, repeat
        tex = scene.textures
        self._albedo = self._keep(ctx.texture_array(
            (tex.shape[2], tex.shape[1], tex.shape[0]), 3,
            np.ascontiguousarray(tex, np.float16).tobytes(), dtype="f2"))
        self._albedo.build_mipmaps()
        self._albedo.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        self._albedo.repeat_x = self._albedo.repeat_y = True
        # geometry
        self._n_index = 3 * scene.n_triangles
        if self._n_index:
            verts, idx = _indexed(scene)
            self._vbo = self._keep(ctx.buffer(verts.tobytes()))
            self._ibo = self._keep(ctx.buffer(idx.tobytes()))
            size = max(CHUNK_TRIANGLES, -(-scene.n_triangles // MAX_CHUNKS))
            (self._chunk_tris, self._chunk_bounds, self._chunk_centre,
             self._chunk_radius) = _chunks(verts, idx, size)
        self._cmd = None
        self._inst = None
        self._vao = None
        # sun shadow map
        self._shadow = self._keep(ctx.depth_texture((shadow_size, shadow_size)))
        self._shadow.compare_func = "<="
        self._shadow.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self._shadow.repeat_x = self._shadow.repeat_y = False
        sb = scene.shadow_bounds if scene.shadow_bounds is not None else scene.bounds
        clip, tex_m, texel, depth_ext = _light_matrices(self.sky, sb, shadow_size)
        self._shadow_uniforms = {
            "u_light": _mat(tex_m),
            "u_normal_bias": SHADOW_NORMAL_BIAS_TEXELS * texel,
            "u_depth_bias": SHADOW_DEPTH_BIAS_TEXELS * texel / depth_ext,
            "u_shadow_texel": (1.0 / shadow_size, 1.0 / shadow_size),
        }
        sfbo = self._keep(ctx.framebuffer(depth_attachment=self._shadow))
        with _using(ctx, sfbo):
            self._render_shadow(sfbo, clip, shadow_size)
        for k, v in self._shadow_uniforms.items():
            if k not in self._prog:          # unlit, or SHADOW_TAPS == 1
                continue
            if isinstance(v, bytes):
                self._prog[k].write(v)
            else:
                self._prog[k].value = v

    def _render_shadow(self, sfbo, clip, shadow_size):
        ctx = self.ctx
        ctx.viewport = (0, 0, shadow_size, shadow_size)
        sfbo.clear(depth=1.0)
        if self._n_index and self.lighting == "lit":
            sprog = self._keep(_shaders.program(ctx, "shadow.vs", "shadow.fs", root=SHADER_ROOT))
            sprog["u_light_clip"].write(_mat(clip))
            svao = self._keep(ctx.vertex_array(sprog, [(self._vbo, "3f 36x", "in_position")],
                                               index_buffer=self._ibo, index_element_size=4))
            ctx.enable(moderngl.DEPTH_TEST)
            ctx.disable(moderngl.CULL_FACE)
            ctx.depth_func = "<"
            ctx.polygon_offset = (1.5, 2.0)
            ctx.enable_direct(GL_DEPTH_CLAMP)
            try:
                svao.render(moderngl.TRIANGLES, vertices=self._n_index)
            finally:
                ctx.disable_direct(GL_DEPTH_CLAMP)
                ctx.polygon_offset = (0.0, 0.0)

    def default_batch(self) -> int:
        """Probes per pass that fit a ``max_target_side`` square target."""
        per_side = self.max_target_side // self.tile
        return max(1, (per_side * per_side) // 6)

    def _layout(self, batch: int):
        """Tile grid (cols, rows) for ``batch`` probes."""
        n_tiles = 6 * batch
        cols = min(self._max_side // self.tile, max(1, int(np.ceil(np.sqrt(n_tiles)))))
        rows = -(-n_tiles // cols)
        if rows * self.tile > self._max_side:
            raise ValueError(f"batch {batch} does not fit a {self._max_side}^2 target at "
                             f"tile {self.tile}")
        return cols, rows

    def _target(self, batch: int):
        cols, rows = self._layout(batch)
        key = (cols, rows)
        if self._fbo_key != key:
            self._release_target()
            T = self.tile
            size = (cols * T, rows * T)
            self._color = self.ctx.texture(size, 4, dtype="f4")
            self._depth = self.ctx.depth_renderbuffer(size)
            self._fbo = self.ctx.framebuffer([self._color], self._depth)
            self._inst = self.ctx.buffer(reserve=16 * cols * rows)     # one vec4 per tile
            if self._n_index:
                fmt, names = _vertex_format(self._prog)
                self._vao = self.ctx.vertex_array(
                    self._prog, [(self._vbo, fmt, *names), (self._inst, "4f/i", "in_probe")],
                    index_buffer=self._ibo, index_element_size=4)
            self._fbo_key = key
        return cols, rows

    def _release_target(self):
        for name in ("_vao", "_inst", "_fbo", "_color", "_depth"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.release()
                setattr(self, name, None)
        self._fbo_key = None
        self._readback = None

    # ----------------------------------------------------------- render
    def _pass(self, pos: np.ndarray, cols: int, rows: int) -> np.ndarray:
        """Render probes ``pos`` (B, 3) into the target; (B, 6, R, R, 3) float32."""
        ctx, T, B = self.ctx, self.tile, len(pos)
        n_inst = 6 * B
        rows_used = -(-n_inst // cols)
        inst = np.empty((B, 6, 4), np.float32)
        inst[..., :3] = pos[:, None, :]
        inst[..., 3] = np.arange(n_inst, dtype=np.float32).reshape(B, 6)   # tile index
        self._inst.write(inst.tobytes())
        n_cmd = 0
        if self._n_index:
            n_cmd = self._prepare_draws(pos)
        # far plane: just beyond the scene's farthest corner from any probe
        corners = np.array([[x, y, z] for x in self._bounds[:, 0] for y in self._bounds[:, 1]
                            for z in self._bounds[:, 2]])
        far = float(np.linalg.norm(pos[:, None, :] - corners[None], axis=-1).max())
        zn = self.near
        zf = max(1.01 * far, 2.0 * zn)
        self._prog["u_depth"].value = ((zf + zn) / (zf - zn), -2.0 * zf * zn / (zf - zn))
        with _using(ctx, self._fbo):
            img = self._draw(cols, rows_used, n_cmd)             # (rows_used, T, cols, T, 4)
        # box filter on the tiles as a strided view (no copy of the full-size
        # image), then tile order i = row * cols + col -> (probe, face)
        small = downsample_box(img.transpose(0, 2, 1, 3, 4)[..., :3], self.supersample)
        R = self.R
        return small.reshape(rows_used * cols, R, R, 3)[:n_inst].reshape(B, 6, R, R, 3)

    def _prepare_draws(self, pos: np.ndarray) -> int:
        """Chunks near to far from the batch's centre into the index buffer
        (early depth test rejects more), and per (probe, face) draw commands
        for the chunks its frustum meets (all chunks without ``cull``).
        Returns the number of commands."""
        bounds = self._chunk_bounds
        order = np.argsort(np.linalg.norm(self._chunk_centre - pos.mean(0), axis=1), kind="stable")
        n_tri = np.diff(bounds)[order]
        # triangle rows of the chunks in that order, as one gather
        start = np.repeat(bounds[:-1][order] - np.concatenate([[0], np.cumsum(n_tri)[:-1]]), n_tri)
        rows = np.arange(int(n_tri.sum())) + start
        self._ibo.write(np.ascontiguousarray(self._chunk_tris[rows]).tobytes())
        count = 3 * n_tri
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        if self.cull:
            vis = _visible_chunks(pos, self._chunk_centre[order], self._chunk_radius[order], self.near)
        else:
            vis = np.ones((6 * len(pos), len(order)), bool)
        cmd = _draw_commands(vis, first, count)
        nbytes = max(cmd.nbytes, 20)
        if self._cmd is None or self._cmd.size < nbytes:
            if self._cmd is not None:
                self._cmd.release()
            self._cmd = self.ctx.buffer(reserve=int(nbytes * 1.25))
        self._cmd.write(cmd.tobytes())
        return len(cmd)

    def _draw(self, cols: int, rows_used: int, n_cmd: int) -> np.ndarray:
        """Geometry then sky into the bound target; the used rows read back as
        a view ``(rows_used, T, cols, T, 4)`` float32 of a reused buffer."""
        ctx, T = self.ctx, self.tile
        W = cols * T
        ctx.viewport = (0, 0, W, rows_used * T)
        ctx.scissor = None
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0, viewport=(0, 0, W, rows_used * T))
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        # the viewport covers the used rows only: tile scale is relative to it
        sx, sy = T / W, T / (rows_used * T)
        if n_cmd:
            self._prog["u_cols"].value = cols
            self._prog["u_tile_scale"].value = (sx, sy)
            self._albedo.use(0)
            self._shadow.use(1)
            ctx.depth_func = "<"
            for i in range(4):
                ctx.enable_direct(GL_CLIP_DISTANCE0 + i)
            try:
                self._vao.render_indirect(self._cmd, moderngl.TRIANGLES, count=n_cmd)
            finally:
                for i in range(4):
                    ctx.disable_direct(GL_CLIP_DISTANCE0 + i)
        self._sky_prog["u_cols"].value = cols
        self._sky_prog["u_tile"].value = T
        ctx.depth_func = "<="
        self._sky_vao.render(moderngl.TRIANGLES, vertices=3)
        ctx.depth_func = "<"
        H = rows_used * T
        if self._readback is None or self._readback.size < H * W * 4:
            self._readback = np.empty(H * W * 4, np.float32)
        buf = self._readback[:H * W * 4]
        self._fbo.read_into(buf, viewport=(0, 0, W, H), components=4, dtype="f4")
        return buf.reshape(rows_used, T, cols, T, 4)

    def render(self, positions, batch: int | None = None, progress=None) -> np.ndarray:
        """Capture probes at ``positions``.

        Parameters
        ----------
        positions : (P, 3) float
        batch : int or None
            Probes per pass (default :meth:`default_batch`). The render target
            takes about ``6 * batch * (R * supersample)^2 * 20`` bytes (RGBA32F
            colour, 24-bit depth), the read-back buffer as much again.
        progress : callable or None
            Called as ``progress(done, total)`` (probes) after every pass.

        Returns
        -------
        faces : (P, 6, R, R, 3) float32
            Linear radiance, DESIGN-NOTES §1 layout.
        """
        pos = np.asarray(positions, np.float32).reshape(-1, 3)
        if not np.isfinite(pos).all():
            raise ValueError("positions must be finite")
        P = len(pos)
        out = np.empty((P, 6, self.R, self.R, 3), np.float32)
        if P == 0:
            return out
        B = self.default_batch() if batch is None else int(batch)
        if B < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        B = min(B, P)
        cols, rows = self._target(B)
        for start in range(0, P, B):
            stop = min(P, start + B)
            out[start:stop] = self._pass(pos[start:stop], cols, rows)
            if progress is not None:
                progress(stop, P)
        return out

    # ----------------------------------------------------------- lifetime
    def release(self):
        """Free the GL objects (and the context, if this capturer made it)."""
        self._release_target()
        if getattr(self, "_cmd", None) is not None:
            self._cmd.release()
            self._cmd = None
        for obj in reversed(self._objs):
            obj.release()
        self._objs = []
        if self._own_ctx and self.ctx is not None:
            self.ctx.release()
            self.ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------

def capture(scene: Scene, positions, R: int, supersample: int = 4, sky: Sky | None = None,
            ctx: moderngl.Context | None = None, batch: int | None = None, progress=None,
            lighting: str = "lit", **kwargs) -> np.ndarray:
    """Render HDR cubemaps of ``scene`` seen from ``positions``.

    Parameters
    ----------
    scene : Scene
    positions : (P, 3) float
        Probe centres, world units; must not lie inside geometry.
    R : int
        Face resolution of the result.
    supersample : int
        Rendered at ``R * supersample``, box-filtered down
        (:func:`~probewarp.baker.cubemap.downsample_box`).
    sky : Sky or None
        ``None``: ``Sky()``.
    ctx : moderngl.Context or None
        ``None``: a private headless context for this call.
    batch : int or None
        Probes per pass (default: as many as fit a 4096^2 target).
    progress : callable or None
        ``progress(done, total)`` after every pass.
    lighting : {"lit", "unlit"}
    **kwargs
        ``near``, ``shadow_size``, ``max_target_side`` of :class:`Capturer`.

    Returns
    -------
    faces : (P, 6, R, R, 3) float32
        Linear radiance, DESIGN-NOTES §1 layout (face, row ``t``, column ``s``).
    """
    with Capturer(scene, R, supersample, sky=sky, lighting=lighting, ctx=ctx, **kwargs) as cap:
        return cap.render(positions, batch=batch, progress=progress)


def capture_grid(scene: Scene, lo, hi, n, R: int, **kwargs) -> ProbeSet:
    """Capture a regular grid of probes (DESIGN-NOTES §2).

    Parameters
    ----------
    scene : Scene
    lo, hi : (3,) float
        First and last probe centre per axis.
    n : (3,) int
        Probes per axis.
    R : int
    **kwargs
        Passed to :func:`capture`.

    Returns
    -------
    ProbeSet
        ``positions`` (P, 3) float32 in grid order (z fastest), ``faces``
        (P, 6, R, R, 3) float32, ``grid_shape``, ``lo``, ``hi``.
    """
    pos = grid_positions(lo, hi, n)
    faces = capture(scene, pos, R, **kwargs)
    return ProbeSet(positions=pos, faces=faces,
                    grid_shape=tuple(int(v) for v in np.asarray(n).reshape(3)),
                    lo=np.asarray(lo, np.float32).reshape(3),
                    hi=np.asarray(hi, np.float32).reshape(3))
