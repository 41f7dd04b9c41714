"""The sun's shadow map for lit capture: light matrices and the depth pass.

An orthographic view along the sun (:class:`~probewarp.capture.sky.Sky`'s
``sun_direction``) over the scene's ``shadow_bounds`` (:func:`light_matrices`),
rendered depth-only by ``capture/shaders/shadow.vs`` / ``shadow.fs`` into a
24-bit depth texture with ``compare_func <=`` (hardware PCF), which
``capture/shaders/capture.fs`` reads back through ``u_light`` (the same view
mapped to [0, 1]) with a normal offset and a depth bias in shadow-map texels.
Used by :class:`probewarp.capture.capturer.Capturer`.

Notes
-----
Left out on purpose: cascades and fitting the map to the probes' view (one map
over the whole ``shadow_bounds``; geometry outside it is lit, never shadowed),
and soft shadows beyond PCF.
"""
from __future__ import annotations

import numpy as np
import moderngl

from probewarp.capture import SHADER_ROOT
from probewarp.runtime import shaders as _shaders

#: ``GL_DEPTH_CLAMP``: shadow casters in front of the shadow map's near plane
#: keep casting (their depth clamps to 0).
GL_DEPTH_CLAMP = 0x864F
#: Side of the sun's shadow map (depth 24 bit: 64 MiB at 4096).
SHADOW_MAP_SIZE = 4096
#: Shadow-map normal offset and depth bias, in shadow-map texels.
SHADOW_NORMAL_BIAS_TEXELS = 1.5
SHADOW_DEPTH_BIAS_TEXELS = 1.0


def mat_bytes(m: np.ndarray) -> bytes:
    """(4, 4) row-major matrix -> 64 bytes float32, column-major as GLSL reads it."""
    return np.ascontiguousarray(np.asarray(m, np.float32).T).tobytes()


def light_matrices(sky, bounds: np.ndarray, size: int):
    """Orthographic sun view over ``bounds``.

    Parameters
    ----------
    sky : Sky
    bounds : (2, 3) float, the box the map covers
    size : int, the map's side in texels

    Returns
    -------
    clip : (4, 4) float64, world -> clip space of the map
    tex : (4, 4) float64, world -> [0, 1] map coordinates and depth
    texel : float, a map texel's world size
    depth : float, the map's depth extent, world units
    """
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


def shadow_uniforms(tex: np.ndarray, texel: float, depth: float, size: int) -> dict:
    """``capture.fs`` uniforms of a map from :func:`light_matrices`:
    ``u_light`` (bytes), ``u_normal_bias``, ``u_depth_bias``, ``u_shadow_texel``."""
    return {
        "u_light": mat_bytes(tex),
        "u_normal_bias": SHADOW_NORMAL_BIAS_TEXELS * texel,
        "u_depth_bias": SHADOW_DEPTH_BIAS_TEXELS * texel / depth,
        "u_shadow_texel": (1.0 / size, 1.0 / size),
    }


def depth_texture(ctx: moderngl.Context, size: int):
    """A ``size`` x ``size`` depth texture for hardware PCF (compare ``<=``,
    linear filtering, clamped)."""
    tex = ctx.depth_texture((size, size))
    tex.compare_func = "<="
    tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
    tex.repeat_x = tex.repeat_y = False
    return tex


def render_depth(ctx: moderngl.Context, fbo, clip: np.ndarray, size: int, geometry, keep):
    """Clear the bound shadow framebuffer ``fbo`` and draw the casters into it.

    Parameters
    ----------
    ctx : moderngl.Context
    fbo : moderngl.Framebuffer, bound, depth attachment only
    clip : (4, 4) float, from :func:`light_matrices`
    size : int, the map's side
    geometry : (vbo, ibo, n_index) or None
        The scene's vertex buffer (48-byte rows, position first), its int32
        index buffer and the index count; None: the map stays cleared
        (unlit capture, empty scene).
    keep : callable
        Takes ownership of the GL objects made here (released with the
        capturer).
    """
    ctx.viewport = (0, 0, size, size)
    fbo.clear(depth=1.0)
    if geometry is None:
        return
    vbo, ibo, n_index = geometry
    prog = keep(_shaders.program(ctx, "shadow.vs", "shadow.fs", root=SHADER_ROOT))
    prog["u_light_clip"].write(mat_bytes(clip))
    vao = keep(ctx.vertex_array(prog, [(vbo, "3f 36x", "in_position")],
                                index_buffer=ibo, index_element_size=4))
    ctx.enable(moderngl.DEPTH_TEST)
    ctx.disable(moderngl.CULL_FACE)
    ctx.depth_func = "<"
    ctx.polygon_offset = (1.5, 2.0)
    ctx.enable_direct(GL_DEPTH_CLAMP)
    try:
        vao.render(moderngl.TRIANGLES, vertices=n_index)
    finally:
        ctx.disable_direct(GL_DEPTH_CLAMP)
        ctx.polygon_offset = (0.0, 0.0)
