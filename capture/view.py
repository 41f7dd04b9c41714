"""The scene seen by a pinhole camera, shaded exactly as probe capture shades it.

:class:`SceneView` draws a :class:`~probewarp.capture.capturer.Capturer`'s
scene (its vertex and index buffers, albedo textures, sun shadow map and sky)
from a camera instead of from probe faces: ``capture/shaders/view.vs`` projects
the same vertices with one view-projection matrix and ``capture.fs`` shades
them with the same lighting, so what the flythrough shows of the geometry is
what the probes saw; ``view_sky.fs`` fills the rest with the capture's sky.
It is the host renderer's geometry pass in the demo (a real host draws its
own).

GL state: like the capturer's (depth test on with ``<``, blending and culling
off); the viewport is the caller's.
"""
from __future__ import annotations

import moderngl
import numpy as np

from probewarp.capture import SHADER_ROOT
from probewarp.capture.geometry import vertex_format
from probewarp.runtime import shaders as _shaders


class SceneView:
    """Draw ``capturer.scene`` from a camera into the bound framebuffer.

    Parameters
    ----------
    capturer : Capturer
        Lit (``lighting="lit"``) or unlit; its context is used and its GL
        objects are shared (release this view before the capturer).
    """

    def __init__(self, capturer):
        self.capturer = capturer
        self.ctx = ctx = capturer.ctx
        unlit = capturer.lighting == "unlit"
        self.prog = _shaders.program(ctx, "view.vs", "capture.fs", root=SHADER_ROOT,
                                     defines={"LIGHTING_UNLIT": int(unlit), "SHADOW_TAPS": 4})
        self.sky_prog = _shaders.program(ctx, "view_sky.vs", "view_sky.fs", root=SHADER_ROOT)
        uni = dict(capturer.sky._uniforms(), **capturer._shadow_uniforms)
        for prog in (self.prog, self.sky_prog):
            for k, v in uni.items():
                if k in prog:
                    if isinstance(v, bytes):
                        prog[k].write(v)
                    else:
                        prog[k].value = v
        self.sky_vao = ctx.vertex_array(self.sky_prog, [])
        self.vao = None
        if capturer._n_index:
            fmt, names = vertex_format(self.prog)
            self.vao = ctx.vertex_array(self.prog, [(capturer._vbo, fmt, *names)],
                                        index_buffer=capturer._ibo, index_element_size=4)

    def render(self, camera, viewport) -> None:
        """Geometry then sky, with depth, into the bound framebuffer of size
        ``viewport`` = (width, height) (clear it first)."""
        ctx = self.ctx
        w, h = int(viewport[0]), int(viewport[1])
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        ctx.depth_func = "<"
        if self.vao is not None:
            vp = camera.view_projection(w / h).astype(np.float32)
            self.prog["u_view_proj"].write(vp.T.tobytes())            # column-major
            self.prog["u_eye"].value = tuple(float(v) for v in camera.position)
            self.capturer._albedo.use(0)
            self.capturer._shadow.use(1)
            self.vao.render(moderngl.TRIANGLES)
        self.sky_prog["u_rotation"].write(np.asarray(camera.rotation, np.float32).T.tobytes())
        self.sky_prog["u_tan_half"].value = camera.tan_half(w / h)
        ctx.depth_func = "<="
        self.sky_vao.render(moderngl.TRIANGLES, vertices=3)
        ctx.depth_func = "<"

    def release(self) -> None:
        for o in (self.vao, self.sky_vao, self.prog, self.sky_prog):
            if o is not None:
                o.release()
        self.vao = None
