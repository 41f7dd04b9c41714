"""GPU decode passes built on ``shaders/common_probewarp.glsl`` and a :class:`.Streamer`.

- :class:`CubemapDecoder`: decode the field into cubemaps at positions (image
  based lighting for a host renderer; ``probewarp decode --backend gl``).
- :class:`FieldView`: draw a camera view of the decoded field at the camera's
  position (the flythrough).
- :func:`decode_gl`: the whole archive path, positions in, faces out, for the
  CLI and the parity tests against the CPU reference decoder.
"""
from __future__ import annotations

import math

import numpy as np

from probewarp.format import layout
from probewarp.format.errors import InputError
from probewarp.runtime import shaders
from probewarp.runtime.context import _gl, check_gl_error, create_context, ensure_alive
from probewarp.runtime.cubearray import CubemapArray
from probewarp.runtime.streamer import Streamer


def footprint_lod(Rp: int, R: float, max_lod: float) -> float:
    """Prototype mip level whose texel footprint matches an ``R x R`` face
    (``R`` may be fractional: a pixel of angle ``a`` is a face of ``(pi/2) / a``):
    ``log2(Rp / R)`` clamped to ``[0, max_lod]`` (0 when ``R >= Rp``)."""
    return float(min(max(math.log2(Rp / R), 0.0), max_lod))


class CubemapDecoder:
    """Decode into cube-map-array layers, one cubemap per position.

    Parameters
    ----------
    streamer : Streamer
        Supplies the field; its pages around each position must be resident
        (:meth:`Streamer.require` or :meth:`Streamer.update`), else the
        documented fallback applies (alpha = coverage).
    out_format : {"rgba32f", "rgba16f"}
        Image format of the targets this decoder writes.
    code_per_texel : bool
        Decode the full stencil in every texel (``pw_decode``) instead of once
        per work group: same result, the per-pixel cost of a surface shader
        (benchmarks).
    """

    LOCAL = 8

    def __init__(self, streamer: Streamer, out_format: str = "rgba32f", *, code_per_texel: bool = False):
        if out_format not in ("rgba32f", "rgba16f"):
            raise ValueError(f"out_format must be rgba32f or rgba16f, got {out_format!r}")
        self.streamer = streamer
        self.ctx = streamer.ctx
        self.out_format = out_format
        self.code_per_texel = bool(code_per_texel)
        self.program = shaders.compute(self.ctx, "decode_cubemap.cs",
                                       dict(streamer.defines, OUT_FORMAT=out_format, LOCAL_SIZE=self.LOCAL,
                                            CODE_PER_TEXEL=self.code_per_texel))
        self.codes = CodePass(streamer)
        self._positions = None

    def decode_into(self, target: CubemapArray, positions, *, first_layer: int = 0, lod: float | None = None) -> None:
        """Write the decode at ``positions`` (Q, 3) into layers ``first_layer..+Q``
        of ``target`` (level 0). ``lod`` defaults to the footprint of the target's
        resolution. No read-back, no wait: the GPU work is queued."""
        ensure_alive(self.ctx, "CubemapDecoder.decode_into")
        GL = _gl()
        q = np.asarray(positions, np.float32).reshape(-1, 3)
        Q = q.shape[0]
        if target.internal_format != self.out_format:
            raise ValueError(f"target is {target.internal_format}, this decoder writes {self.out_format}")
        if first_layer < 0 or first_layer + Q > target.layers:
            raise ValueError(f"layers [{first_layer}, {first_layer + Q}) out of [0, {target.layers})")
        R = target.resolution
        self._positions = write_positions(self.ctx, self._positions, q)
        s = self.streamer
        if not self.code_per_texel:
            self.codes.run(self._positions, Q)          # binds the code records
        self._positions.bind_to_storage_buffer(layout.BINDING_POSITIONS)
        s.bind(self.program)
        self.program["u_res"].value = R
        for name, value in (("u_count", Q), ("u_first_layer", int(first_layer)),
                            ("u_lod", footprint_lod(s.Rp, R, s.levels - 1) if lod is None else float(lod))):
            if name in self.program:
                self.program[name].value = value
        fmt = GL.GL_RGBA32F if self.out_format == "rgba32f" else GL.GL_RGBA16F
        GL.glBindImageTexture(0, target.glo, 0, GL.GL_TRUE, 0, GL.GL_WRITE_ONLY, fmt)
        g = -(-R // self.LOCAL)
        self.program.run(g, g, 6 * Q)
        GL.glMemoryBarrier(GL.GL_TEXTURE_FETCH_BARRIER_BIT | GL.GL_SHADER_IMAGE_ACCESS_BARRIER_BIT
                           | GL.GL_TEXTURE_UPDATE_BARRIER_BIT)
        check_gl_error("decode_cubemap.cs", self.ctx)

    def release(self):
        if self._positions is not None:
            self._positions.release()
            self._positions = None
        self.codes.release()
        self.program.release()


def write_positions(ctx, buf, q):
    """(Q, 3) positions -> an SSBO of ``layout.POSITION_DTYPE`` for the passes here and a
    host's own (``CodePass.run``); ``buf`` is reused when large enough, else released and
    replaced. Returns the buffer to keep."""
    data = layout.pack_positions(q)
    if buf is None or buf.size < data.nbytes:
        if buf is not None:
            buf.release()
        buf = ctx.buffer(reserve=max(data.nbytes, 1024))
    buf.write(data.tobytes())
    return buf


def stencil_gl(streamer, positions):
    """The probes the GPU blends at each position (``pw_stencil.cs``: GLSL
    ``pw_find_probes`` with the streamer's resident pages): (Q,) int count,
    (Q, K) page, (Q, K) local index in that page, (Q, K) float32 weight,
    K = ``streamer.code_corners``, in the stencil's fixed slots (unused
    entries page -1, weight 0). For
    checking a host's field and for tests (CPU twin: ``Decoder.pw_find_probes``)."""
    ctx = streamer.ctx
    ensure_alive(ctx, "stencil_gl")
    K = int(streamer.code_corners)
    words = 1 + 3 * K
    q = np.asarray(positions, np.float64).reshape(-1, 3)
    prog = shaders.compute(ctx, "pw_stencil.cs", streamer.defines)
    pos = write_positions(ctx, None, q)
    out = ctx.buffer(reserve=max(1, q.shape[0]) * words * 4)
    try:
        streamer.bind(prog)
        pos.bind_to_storage_buffer(layout.BINDING_POSITIONS)
        out.bind_to_storage_buffer(layout.BINDING_CODE_RECORDS)
        prog["u_count"].value = q.shape[0]
        prog.run(-(-q.shape[0] // 64))
        raw = np.frombuffer(out.read(), np.uint32).reshape(-1, words)[:q.shape[0]]
    finally:
        for o in (prog, pos, out):
            o.release()
    check_gl_error("pw_stencil.cs", ctx)
    n = raw[:, 0].astype(np.int64)
    slot = raw[:, 1:1 + K].astype(np.int64)
    used = slot != 0xFFFFFFFF                  # fixed slots (PwStencil): unused entries marked
    page = np.where(used, streamer.slot_page[np.where(used, slot, 0)], -1)
    local = np.where(used, raw[:, 1 + K:1 + 2 * K].astype(np.int64), 0)
    w = np.where(used, raw[:, 1 + 2 * K:].view(np.float32), 0.0).astype(np.float32)
    return n, page, local, w


class CodePass:
    """``code_at.cs``: the merged code of the field at each position, once per
    position, into an SSBO of ``layout.code_record_dtype(N)`` records (binding
    ``layout.BINDING_CODE_RECORDS``) that decode passes read."""

    def __init__(self, streamer: Streamer):
        self.streamer = streamer
        self.ctx = streamer.ctx
        self.record_bytes = layout.code_record_dtype(streamer.N, streamer.code_corners).itemsize   # PwCodeRecord
        self.program = shaders.compute(self.ctx, "code_at.cs", streamer.defines)
        self.buffer = None

    def run(self, positions_buffer, count: int) -> None:
        ensure_alive(self.ctx, "CodePass.run")
        need = max(count, 1) * self.record_bytes
        if self.buffer is None or self.buffer.size < need:
            if self.buffer is not None:
                self.buffer.release()
            self.buffer = self.ctx.buffer(reserve=need)
        self.streamer.bind(self.program)
        positions_buffer.bind_to_storage_buffer(layout.BINDING_POSITIONS)
        self.buffer.bind_to_storage_buffer(layout.BINDING_CODE_RECORDS)
        self.program["u_count"].value = int(count)
        self.program.run(-(-count // 64))
        GL = _gl()
        GL.glMemoryBarrier(GL.GL_SHADER_STORAGE_BARRIER_BIT)

    def release(self):
        if self.buffer is not None:
            self.buffer.release()
            self.buffer = None
        self.program.release()


def decode_gl(archive, positions, R: int | None = None, *, ctx=None, page_slots: int = 64,
              chunk: int = 256, coverage: bool = False):
    """Decode an archive at positions on the GPU (the GLSL decoder).

    Parameters
    ----------
    archive : path of a grid archive
    positions : (Q, 3)
    R : output face size (default: the probes' resolution)
    ctx : moderngl.Context, optional (default: a headless EGL context)
    page_slots : pages resident at once (positions are decoded in groups whose
        pages fit)
    chunk : positions per dispatch at most
    coverage : also return the (Q,) alpha (1: probes found)

    Returns
    -------
    (Q, 6, R, R, 3) float32 linear radiance [, (Q,) float32 coverage]
    """
    own = ctx is None
    if own:
        ctx = create_context()
    q = np.asarray(positions, np.float64).reshape(-1, 3)
    try:
        with Streamer(ctx, archive, page_slots=page_slots, uploads_per_frame=None) as s:
            R = int(R or s.R)
            if R < 1:
                raise InputError(f"--res {R}: must be at least 1")
            dec = CubemapDecoder(s, "rgba32f")
            out = np.empty((q.shape[0], 6, R, R, 3), np.float32)
            cov = np.empty(q.shape[0], np.float32)
            # group positions by the pages they read, in spatial order, so each
            # group's pages fit the slots
            order = s.spatial_order(q)
            target = CubemapArray(ctx, R, min(chunk, max(1, q.shape[0])), "rgba32f")
            try:
                a = 0
                while a < len(order):
                    b = min(a + chunk, len(order))
                    while b - a > 1 and len(s.corner_pages(q[order[a:b]])) > s.page_slots:
                        b = a + (b - a) // 2
                    idx = order[a:b]
                    s.require(q[idx])
                    dec.decode_into(target, q[idx])
                    got = target.read()[:len(idx)]
                    out[idx] = got[..., :3]
                    cov[idx] = got[:, 0, 0, 0, 3]
                    a = b
            finally:
                target.release()
                dec.release()
            if s.failed:
                bad = ", ".join(f"page {p}: {m}" for p, m in sorted(s.failed.items())[:3])
                raise InputError(f"{archive}: {len(s.failed)} page(s) failed to load ({bad})")
    finally:
        if own:
            ctx.release()
    return (out, cov) if coverage else out


class FieldView:
    """Draw what a camera at position ``x`` sees of the decoded field (the
    flythrough's view): every pixel is the decode at the camera's position in
    the pixel's view direction, footprint-matched mip level, into the current
    framebuffer (linear radiance, alpha = coverage; ``tonemap=True`` writes the
    DESIGN-NOTES §5 tonemap instead, for 8-bit frames).

    The merged code at the camera position is built once per frame by
    :class:`CodePass` (``code_at.cs``) into an SSBO that the fragment shader
    (``field_view.fs``) reads.
    """

    def __init__(self, streamer: Streamer, *, tonemap: bool = False):
        self.streamer = streamer
        self.ctx = streamer.ctx
        self.codes = CodePass(streamer)
        self.program = shaders.program(self.ctx, "field_view.vs", "field_view.fs", defines=
                                       dict(streamer.defines, PW_VIEW_TONEMAP=bool(tonemap)))
        self.vao = self.ctx.vertex_array(self.program, [])
        self._positions = None

    def render(self, position, view_rotation, fov_y_deg: float, viewport) -> None:
        """Draw into the bound framebuffer.

        Parameters
        ----------
        position : (3,) camera position (world)
        view_rotation : (3, 3) camera-to-world rotation (columns: right, up, back;
            the camera looks along -column 2, OpenGL convention)
        fov_y_deg : vertical field of view
        viewport : (width, height) in pixels
        """
        ensure_alive(self.ctx, "FieldView.render")
        s = self.streamer
        x = np.asarray(position, np.float32).reshape(1, 3)
        self._positions = write_positions(self.ctx, self._positions, x)
        self.codes.run(self._positions, 1)
        w, h = int(viewport[0]), int(viewport[1])
        tan_half = math.tan(math.radians(fov_y_deg) / 2)
        s.bind(self.program)
        self.program["u_position"].value = tuple(float(v) for v in x[0])
        rot = np.asarray(view_rotation, np.float32).reshape(3, 3)
        self.program["u_rotation"].write(rot.T.tobytes())   # column-major for GLSL
        self.program["u_tan_half"].value = (tan_half * w / h, tan_half)
        pixel_angle = 2 * tan_half / h
        self.program["u_lod"].value = footprint_lod(s.Rp, (math.pi / 2) / pixel_angle, s.levels - 1)
        self.vao.render(mode=self.ctx.TRIANGLES, vertices=3)
        check_gl_error("field_view", self.ctx)

    def release(self):
        for o in (self.vao, self.program, self.codes):
            o.release()
        if self._positions is not None:
            self._positions.release()
            self._positions = None
