"""The flythrough renderer: objects lit by the decoded probe field, the way a host renderer does it.

This module is the embedding example. Per frame, with only the public
runtime API (:mod:`probewarp.runtime`):

1. ``streamer.update(camera)`` keeps the archive's pages around the camera
   resident (never blocks, unless the caller asks to wait).
2. ``CubemapDecoder.decode_into`` decodes one cubemap at each object's centre
   (and one at the camera, for the environment view), image-based lighting
   probes made on the fly; ``Prefilter`` turns them into irradiance (diffuse)
   and a Phong lobe (rough) cubemaps (:mod:`probewarp.runtime.ibl`).
3. The host draws its geometry (here :class:`probewarp.capture.view.SceneView`,
   the capture renderer's own shading), then the objects:
   ``demo/shaders/objects.fs`` ray-traces three spheres on a full-screen
   triangle -- a **mirror** (decoded radiance in the reflected direction,
   decoded per pixel from the code record of ``CodePass``, exactly what
   ``pw_blend_term`` gives), a **rough** sphere (prefiltered lobe around the
   reflected direction) and a **diffuse** one (irradiance around the normal,
   albedo 0.8).

The same objects can be lit by other :mod:`probewarp.demo.sources` instead
(ground truth captured at their centres, the nearest probe, SH order 2
blended trilinearly): every source fills the same cube-map arrays, so the
comparison differs only in the lighting. Images are linear radiance in
RGBA32F targets; alpha is 1 for geometry and environment and ``2 + material``
on objects (a mask for the metrics). :class:`Presenter` maps them to 8-bit
(DESIGN-NOTES §5 tonemap) in one of the views decoded / truth / error / split.
"""
from __future__ import annotations

import moderngl
import numpy as np

from probewarp.format import constants
from probewarp.runtime import shaders
from probewarp.runtime.cubearray import CubemapArray
from probewarp.runtime.decode import CodePass, CubemapDecoder, FieldView, write_positions
from probewarp.runtime.ibl import DIFFUSE_EXPONENT, ROUGH_EXPONENT, Prefilter
from probewarp.runtime.streamer import Streamer

from importlib.resources import files as _files

#: The demo's own GLSL (package data); includes fall back to probewarp.shaders.
SHADER_ROOT = _files("probewarp.demo").joinpath("shaders")

#: Materials of the three objects, left to right.
MATERIALS = ("mirror", "rough", "diffuse")
#: Albedo of the diffuse sphere.
DIFFUSE_ALBEDO = 0.8
#: Face size of the prefiltered cubemaps: rough lobe, irradiance.
ROUGH_RES, IRRADIANCE_RES = 16, 8
#: The prefilter reads the lighting cubemaps at their first mip level of at most
#: this face size (halving while the size stays even and at least 8).
PREFILTER_INPUT_RES = 16
#: Lighting sources the renderer knows (``decoded`` is the archive).
SOURCES = ("decoded", "truth", "nearest", "sh2")


def object_layout(step) -> tuple[np.ndarray, float]:
    """Where the three objects ride, in camera coordinates (right, up, back),
    for a probe grid of spacing ``step``: (3, 3) offsets and the sphere radius.
    In front of the camera, left / middle / right, a little below the eye."""
    s = float(np.min(np.asarray(step, np.float64)))
    r = 0.3 * s
    return np.array([[-2.4 * r, -0.8 * r, -5.5 * r], [0.0, -0.8 * r, -5.5 * r],
                     [2.4 * r, -0.8 * r, -5.5 * r]]), r


class Flythrough:
    """GL resources of the flythrough on one context.

    Parameters
    ----------
    ctx : moderngl.Context
        Current on this thread (headless EGL or a window's).
    archive : path of a grid archive
    scene : capture Scene or None
        Drawn as the geometry and used for the ground truth (``truth``);
        without it the background is the decoded environment and there is
        no ground truth.
    probes : ProbeSet or None
        The uncompressed probes, for the ``nearest`` and ``sh2`` baselines.
    truth : object or None
        Another ground truth instead of capturing ``scene``'s: anything with
        ``cubemaps(positions, r) -> (Q, 6, r, r, 3)`` and attributes ``r``
        (its face size) and ``last`` (its last cubemaps); for example a
        procedural field.
    page_slots : int
        Streamer slots (GPU budget).
    env_res : int or None
        Face size of the lighting cubemaps (default R, the probes' own: the
        ground truth is then exactly the probe a capture there would give).
    """

    def __init__(self, ctx, archive, *, scene=None, probes=None, truth=None, page_slots: int = 8,
                 env_res: int | None = None, uploads_per_frame: int | None = 2):
        from probewarp.demo import sources
        self.ctx = ctx
        self._objs = []
        try:
            self.streamer = self._keep(Streamer(ctx, archive, page_slots=page_slots,
                                                uploads_per_frame=uploads_per_frame))
            s = self.streamer
            self.R = s.R
            self.env_res = int(env_res or s.R)
            if self.env_res < 1:
                raise ValueError(f"env_res must be at least 1, got {self.env_res}")
            self.offsets, self.sphere_radius = object_layout(s.grid.step)
            self.decoder = self._keep(CubemapDecoder(s, "rgba32f"))
            self.codes = self._keep(CodePass(s))
            self.field_view = self._keep(FieldView(s))
            self.diffuse = self._keep(Prefilter(ctx, DIFFUSE_EXPONENT))
            self.rough = self._keep(Prefilter(ctx, ROUGH_EXPONENT))
            self.objects = self._keep(shaders.program(ctx, "fullscreen.vs", "objects.fs", root=SHADER_ROOT,
                                                      defines=s.defines))
            self.env_prog = self._keep(shaders.program(ctx, "fullscreen.vs", "environment.fs",
                                                       root=SHADER_ROOT))
            self.vao = self._keep(ctx.vertex_array(self.objects, []))
            self.env_vao = self._keep(ctx.vertex_array(self.env_prog, []))
            self.sources = {"decoded": None}
            self.scene_view = None
            self.truth = None
            if scene is not None:
                from probewarp.capture.view import SceneView
                self.truth = sources.TruthSource(scene, self.R, self.env_res, ctx=ctx)
                self._objs.append(self.truth)
                self.scene_view = self._keep(SceneView(self.truth.capturer))
                self.sources["truth"] = self.truth
            if truth is not None:
                self.truth = truth
                self.sources["truth"] = truth
            if probes is not None:
                self.sources["nearest"] = sources.NearestProbe(probes)
                self.sources["sh2"] = sources.SHTrilinear(probes, order=2)
            self._lighting = {}
            self._pos_buffer = None
            self._code_buffer = None
        except Exception:
            self.release()
            raise

    def _keep(self, obj):
        self._objs.append(obj)
        return obj

    # -- where things are --------------------------------------------------------
    def sphere_centres(self, camera) -> np.ndarray:
        """(3, 3) world centres of the mirror, rough and diffuse spheres."""
        return camera.position[None, :] + self.offsets @ np.asarray(camera.rotation).T

    def lighting_positions(self, camera) -> np.ndarray:
        """(4, 3): the three sphere centres and the camera (environment view)."""
        return np.concatenate([self.sphere_centres(camera), camera.position[None, :]])

    def code_at(self, position) -> list[tuple[int, int, float]]:
        """The merged code the GPU decodes at ``position`` (``code_at.cs``, read
        back): (page, prototype within the page, weight) per entry, largest
        weight first; page -1 for a slot that holds no page."""
        from probewarp.format import layout
        s = self.streamer
        self._code_buffer = write_positions(self.ctx, self._code_buffer, np.reshape(position, (1, 3)))
        self.codes.run(self._code_buffer, 1)
        dt = layout.code_record_dtype(s.N, s.code_corners)
        rec = np.frombuffer(self.codes.buffer.read(size=dt.itemsize), dt)[0]
        ent = rec["entries"][:int(rec["n"])]
        out = []
        for e in ent[np.argsort(-ent["weight"], kind="stable")]:
            slot, local = divmod(int(e["layer"]), s.slot_prototypes)
            page = int(s.slot_page[slot]) if 0 <= slot < s.page_slots else -1
            out.append((page, local, float(e["weight"])))
        return out

    # -- per frame -----------------------------------------------------------------
    def stream(self, camera, *, wait: bool = False) -> dict:
        """Pages around the camera (non-blocking unless ``wait``: then every page
        a decode at the camera or an object reads is made resident). Returns
        the update's counts (``missing`` before any wait)."""
        s = self.streamer
        counts = s.update(camera.position)
        if wait:
            s.require(self.lighting_positions(camera))
        return counts

    def _arrays(self, name, r):
        key = (name, r)
        if key not in self._lighting:
            levels = _prefilter_levels(r)
            env = CubemapArray(self.ctx, r, 4, "rgba32f", levels)
            rough = CubemapArray(self.ctx, ROUGH_RES, 4, "rgba32f")
            irr = CubemapArray(self.ctx, IRRADIANCE_RES, 4, "rgba32f")
            self._lighting[key] = (env, rough, irr)
        return self._lighting[key]

    def light(self, source: str, camera) -> tuple:
        """Fill the lighting cubemaps of ``source`` at the objects and the camera;
        returns its (env, rough, irradiance) arrays."""
        q = self.lighting_positions(camera)
        if source == "decoded":
            env, rough, irr = self._arrays("decoded", self.env_res)
            self.decoder.decode_into(env, q)
        else:
            faces = self.sources[source].cubemaps(q, self.env_res)
            env, rough, irr = self._arrays(source, faces.shape[2])
            env.upload(0, faces)
        lvl = env.levels - 1
        if lvl:
            env.generate_mipmaps()
        self.rough.run(env, rough, level=lvl)
        self.diffuse.run(env, irr, level=lvl)
        return env, rough, irr

    def render(self, camera, viewport, source: str = "decoded", *, view: str = "scene",
               lighting=None) -> None:
        """Draw one frame lit by ``source`` into the bound framebuffer (RGBA32F
        colour with depth; cleared here). ``view``: ``scene`` (the geometry) or
        ``environment`` (the field itself seen from the camera). ``lighting``:
        the arrays of :meth:`light` (computed here when None)."""
        ctx = self.ctx
        w, h = int(viewport[0]), int(viewport[1])
        if lighting is None:
            lighting = self.light(source, camera)
        env, rough, irr = lighting
        ctx.viewport = (0, 0, w, h)
        ctx.clear(0.0, 0.0, 0.0, 0.0, depth=1.0, viewport=(0, 0, w, h))
        if view == "scene" and self.scene_view is not None:
            self.scene_view.render(camera, (w, h))
        else:
            ctx.disable(moderngl.DEPTH_TEST)
            if source == "decoded":
                self.field_view.render(camera.position, camera.rotation, camera.fov_y, (w, h))
            else:
                env.bind(0)
                p = self.env_prog
                p["u_rotation"].write(np.asarray(camera.rotation, np.float32).T.tobytes())
                p["u_tan_half"].value = camera.tan_half(w / h)
                p["u_layer"].value = 3
                self.env_vao.render(moderngl.TRIANGLES, vertices=3)
        # the objects
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.depth_func = "<"
        ctx.disable(moderngl.BLEND | moderngl.CULL_FACE)
        centres = self.sphere_centres(camera)
        s = self.streamer
        direct = source == "decoded"
        if direct:
            self._pos_buffer = write_positions(ctx, self._pos_buffer, centres)
            self.codes.run(self._pos_buffer, 3)
            s.bind(self.objects)
        env.bind(0)
        rough.bind(1)
        irr.bind(2)
        p = self.objects
        vp = camera.view_projection(w / h).astype(np.float32)
        p["u_view_proj"].write(vp.T.tobytes())
        p["u_eye"].value = tuple(float(v) for v in camera.position)
        p["u_rotation"].write(np.asarray(camera.rotation, np.float32).T.tobytes())
        p["u_tan_half"].value = camera.tan_half(w / h)
        p["u_direct"].value = int(direct)
        p["u_albedo"].value = DIFFUSE_ALBEDO
        p["u_radius"].value = float(self.sphere_radius)
        for k in range(3):
            p["u_centre"].value = tuple(float(v) for v in centres[k])
            p["u_material"].value = k
            p["u_layer"].value = k
            self.vao.render(moderngl.TRIANGLES, vertices=3)

    def release(self) -> None:
        for arrs in getattr(self, "_lighting", {}).values():
            for a in arrs:
                a.release()
        self._lighting = {}
        for name in ("_pos_buffer", "_code_buffer"):
            if getattr(self, name, None) is not None:
                getattr(self, name).release()
                setattr(self, name, None)
        for o in reversed(getattr(self, "_objs", [])):
            o.release() if hasattr(o, "release") else o.close()
        self._objs = []


def _prefilter_levels(r: int) -> int:
    """Mip levels of an ``r`` lighting cubemap: down to the first of at most
    PREFILTER_INPUT_RES (halving while even and at least 8), which the prefilter reads."""
    levels = 1
    while r > PREFILTER_INPUT_RES and r % 2 == 0 and r // 2 >= 8:
        r //= 2
        levels += 1
    return levels


class Presenter:
    """Float frames -> 8-bit: one of the views ``decoded`` (A), ``truth`` (B),
    ``error`` (|T(A) - T(B)| x ``gain``, a heat ramp) or ``split`` (A left, B
    right), tonemapped by DESIGN-NOTES §5's ``T``; into the bound framebuffer."""

    VIEWS = ("decoded", "truth", "error", "split")

    def __init__(self, ctx, gain: float = 4.0):
        self.ctx = ctx
        self.gain = float(gain)
        self.program = shaders.program(ctx, "fullscreen.vs", "present.fs", root=SHADER_ROOT,
                                       defines={"TONEMAP_GAMMA": float(constants.TONEMAP_GAMMA)})
        self.vao = ctx.vertex_array(self.program, [])

    def render(self, a, b, view: str, viewport) -> None:
        if view not in self.VIEWS:
            raise ValueError(f"view must be one of {self.VIEWS}, got {view!r}")
        ctx = self.ctx
        w, h = int(viewport[0]), int(viewport[1])
        ctx.viewport = (0, 0, w, h)
        ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND)
        a.use(0)
        (b if b is not None else a).use(1)
        self.program["u_view"].value = self.VIEWS.index(view) if b is not None else 0
        self.program["u_gain"].value = self.gain
        self.vao.render(moderngl.TRIANGLES, vertices=3)

    def release(self) -> None:
        self.vao.release()
        self.program.release()
