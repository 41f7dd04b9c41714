"""Probe capture: render HDR cubemaps of a :class:`~probewarp.capture.scene.Scene`.

Output is linear radiance in the layout of DESIGN-NOTES §1, ``(P, 6, R, R, 3)``
float32, rendered at ``R * supersample`` and box-filtered down with
:func:`probewarp.baker.cubemap.downsample_box`. :func:`capture_grid` keeps a
grid in memory; :func:`capture_grid_to_store` streams it into a ``.zarr``
probe set pass by pass (:meth:`Capturer.iter_render` through
:class:`~probewarp.baker.probewriter.ZarrProbeWriter`), memory bounded by one
pass, for grids of millions of probes.

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
into spatially compact chunks of
:data:`~probewarp.capture.geometry.CHUNK_TRIANGLES` triangles, and each
(probe, face) gets commands only for the runs of chunks whose bounding sphere
meets its frustum (base instance = tile, which the vertex shader reads from a
per-instance attribute); chunks are ordered near to far from the batch's
centre so the early depth test rejects more (all of it in
:mod:`probewarp.capture.geometry`). The sky
(``capture/shaders/capture_sky.fs``) then fills the texels no geometry covered, with
depth test ``<=`` against the far plane. On 2 llvmpipe cores the vertex work
of the draw is the larger part of the time, the shading of the covered texels
the next.

Lighting (``lighting="lit"``): Lambertian albedo times the sun's direct light
(``Sky.sun_irradiance``, shadowed through an orthographic shadow map over the
scene's ``shadow_bounds``, hardware PCF: :mod:`probewarp.capture.shadow`) plus a hemispherical ambient from
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
from pathlib import Path

import numpy as np
import moderngl

from probewarp.baker.cubemap import downsample_box
from probewarp.baker.probeset import ProbeSet
from probewarp.baker.probewriter import ZarrProbeWriter
from probewarp.runtime import shaders as _shaders
from probewarp.capture import SHADER_ROOT, shadow
from probewarp.capture.geometry import Chunks, indexed, vertex_format
from probewarp.capture.scene import Scene
from probewarp.capture.shadow import SHADOW_MAP_SIZE
from probewarp.capture.sky import Sky

#: ``GL_CLIP_DISTANCE0`` (``+ i`` for plane i).
GL_CLIP_DISTANCE0 = 0x3000
#: Largest side of the capture render target in texels (a float32 RGBA target
#: of 4096^2 is 256 MiB); batches are sized to fit it.
MAX_TARGET_SIDE = 4096
#: Up to this tile side (R * supersample) one hardware-PCF shadow tap per
#: texel suffices: a sub-texel is then coarser than a shadow-map texel in
#: typical scenes, and the box filter smooths edges; larger tiles take 4.
SHADOW_ONE_TAP_MAX_TILE = 64
#: Near plane of probe faces relative to the scene's bounding-box diagonal
#: (geometry closer than this to a probe is clipped away).
NEAR_RELATIVE = 1e-4


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
    from probewarp.runtime.context import create_context
    return create_context()


@contextlib.contextmanager
def _using(ctx: moderngl.Context, fbo):
    """Bind ``fbo``; afterwards bind again what was bound (the default
    framebuffer if moderngl tracked none, or one the caller has released since),
    so that no released framebuffer of ours stays moderngl's notion of the bound one."""
    prev = ctx.fbo
    if prev is not None and isinstance(prev.mglo, moderngl.InvalidObject):
        prev = None
    fbo.use()
    try:
        yield
    finally:
        (prev if prev is not None else ctx.detect_framebuffer(0)).use()


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
        ``None``: a headless context of :func:`probewarp.runtime.context.create_context`,
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
        :data:`~probewarp.capture.geometry.CHUNK_TRIANGLES` triangles whose bounding sphere meets its
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
            verts, idx = indexed(scene)
            self._vbo = self._keep(ctx.buffer(verts.tobytes()))
            self._ibo = self._keep(ctx.buffer(idx.tobytes()))
            self._chunks = Chunks.build(verts, idx)
        self._cmd = None
        self._inst = None
        self._vao = None
        # sun shadow map
        self._shadow = self._keep(shadow.depth_texture(ctx, shadow_size))
        sb = scene.shadow_bounds if scene.shadow_bounds is not None else scene.bounds
        clip, tex_m, texel, depth_ext = shadow.light_matrices(self.sky, sb, shadow_size)
        self._shadow_uniforms = shadow.shadow_uniforms(tex_m, texel, depth_ext, shadow_size)
        sfbo = self._keep(ctx.framebuffer(depth_attachment=self._shadow))
        casters = ((self._vbo, self._ibo, self._n_index)
                   if self._n_index and self.lighting == "lit" else None)
        with _using(ctx, sfbo):
            shadow.render_depth(ctx, sfbo, clip, shadow_size, casters, self._keep)
        for k, v in self._shadow_uniforms.items():
            if k not in self._prog:          # unlit, or SHADOW_TAPS == 1
                continue
            if isinstance(v, bytes):
                self._prog[k].write(v)
            else:
                self._prog[k].value = v

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
                fmt, names = vertex_format(self._prog)
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
        ctx, B = self.ctx, len(pos)
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
        tris, cmd = self._chunks.draws(pos, self.near, self.cull)
        self._ibo.write(tris.tobytes())
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
        P = len(pos)
        out = np.empty((P, 6, self.R, self.R, 3), np.float32)
        for start, faces in self.iter_render(pos, batch=batch):
            stop = start + len(faces)
            out[start:stop] = faces
            if progress is not None:
                progress(stop, P)
        return out

    def iter_render(self, positions, batch: int | None = None):
        """Capture probes at ``positions`` one pass at a time (bounded memory).

        Parameters
        ----------
        positions : (P, 3) float
        batch : int or None
            Probes per pass, as in :meth:`render`.

        Yields
        ------
        start : int
            Index of the pass's first probe.
        faces : (n, 6, R, R, 3) float32
            Its probes (``n = batch`` but for the last pass). Valid until the
            next pass is requested (it may share the read-back buffer): copy
            or write it out before advancing.
        """
        pos = np.asarray(positions, np.float32).reshape(-1, 3)
        if not np.isfinite(pos).all():
            raise ValueError("positions must be finite")
        P = len(pos)
        if P == 0:
            return
        B = self.default_batch() if batch is None else int(batch)
        if B < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        B = min(B, P)
        cols, rows = self._target(B)
        for start in range(0, P, B):
            stop = min(P, start + B)
            yield start, self._pass(pos[start:stop], cols, rows)

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


def capture_grid_to_store(scene: Scene, lo, hi, n, R: int, out, *, batch: int | None = None,
                          progress=None, supersample: int = 4, sky: Sky | None = None,
                          lighting: str = "lit", ctx: moderngl.Context | None = None,
                          dtype=np.float16, chunk_probes: int | None = None, overwrite: bool = True,
                          **kwargs) -> Path:
    """Capture a regular grid of probes straight into a ``.zarr`` probe set, streaming.

    The grid is rendered in lattice order (DESIGN-NOTES §2: x, y, z, z
    fastest) in passes of whole chunks of the store, and every pass is
    written (:class:`~probewarp.baker.probewriter.ZarrProbeWriter`) before
    the next is rendered: memory is bounded by one pass (the render target,
    its read-back and one block of faces), not by the grid's size, so grids
    of millions of probes can be captured. The store is the one
    ``capture_grid(...).save(out, dtype=dtype)`` writes (same arrays, grid
    description and chunks), and appears at ``out`` atomically when the last
    probe is written; on any error (or an interrupt) nothing is left there.

    Parameters
    ----------
    scene : Scene
    lo, hi : (3,) float
        First and last probe centre per axis.
    n : (3,) int
        Probes per axis.
    R : int
    out : str or Path
        The store to write (a directory ending ``.zarr``).
    batch : int or None
        Probes per pass (default :meth:`Capturer.default_batch`); rounded
        down to a multiple of the store's chunk when at least one chunk.
    progress : callable or None
        ``progress(done, total)`` after every pass is written.
    supersample, sky, lighting, ctx, **kwargs
        As for :func:`capture` (``near``, ``shadow_size``, ...).
    dtype : float16 or float32
        Storage dtype of ``faces`` (float16 rejects radiance above
        ``FP16_MAX``, naming the probe).
    chunk_probes : int or None
        Probes per chunk (default as :meth:`ProbeSet.save`).
    overwrite : bool
        Replace an existing store at ``out``.

    Returns
    -------
    Path of the written store (read it with ``ProbeSet.load``; lazy).
    """
    n3 = tuple(int(v) for v in np.asarray(n).reshape(3))
    pos = grid_positions(lo, hi, n3)
    P = len(pos)
    lo32 = np.asarray(lo, np.float32).reshape(3)          # as capture_grid stores them
    hi32 = np.asarray(hi, np.float32).reshape(3)
    with ZarrProbeWriter(out, pos, R, dtype=dtype, grid_shape=n3, lo=lo32, hi=hi32,
                         chunk_probes=chunk_probes, overwrite=overwrite) as w, \
            Capturer(scene, R, supersample, sky=sky, lighting=lighting, ctx=ctx, **kwargs) as cap:
        B = cap.default_batch() if batch is None else int(batch)
        if B < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        C = w.chunk_probes
        if B >= C:
            B -= B % C
        for start, faces in cap.iter_render(pos, batch=B):
            w.write(start, faces)
            if progress is not None:
                progress(start + len(faces), P)
    return Path(out)
