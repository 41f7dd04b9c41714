"""The spherical-harmonics baseline as a GL decoder (``shaders/sh_decode.cs``).

:class:`SHGridDecoderGL` decodes a regular grid of SH light probes (the
coefficients :class:`probewarp.baselines.sh.SphericalHarmonics` fits) into
cubemaps at query positions, the way the users' engines evaluated their SH
probes: trilinear blend of the 8 surrounding probes' coefficients, then a
trig-free polynomial basis (``shaders/sh_eval.glsl``) per texel. It exists so
a benchmark can put our decoder's per-texel cost next to an order-6 SH
evaluation on the same GL.

Convention: ``real_sh_basis`` (index ``l*l + l + m``, orthonormal, no
Condon-Shortley phase), bands ``0..L`` with ``L <= 6`` (``K = (L+1)^2``, 49
for the "SH order 6" baseline). Grid: DESIGN-NOTES §2 (probe ``(i * ny + j) *
nz + k``, z fastest); output cubemaps: DESIGN-NOTES §1, linear radiance.

Notes
-----
Left out on purpose: fp16 storage of the coefficients (the SSBO holds
float32; pass ``SphericalHarmonics.encode``'s fp16 output to decode what
ships), 3D-texture storage with hardware trilinear filtering (what some
engines do instead of the explicit 8-probe gather), and any clamping of
linear-domain values at 0 (the baseline does not clamp either).

GL state: :meth:`SHGridDecoderGL.dispatch` binds SSBO bindings 0 and 1 and
image unit 0 and leaves them bound (as moderngl's own ``bind_to_*`` calls do).
"""
from __future__ import annotations

import numpy as np
import moderngl

from probewarp.format import constants
from probewarp.baselines.base import DOMAINS
from probewarp.baselines.sh import sh_count
from probewarp.format.grid import Grid
from probewarp.format.errors import InputError
from probewarp.runtime import shaders as _shaders
from probewarp.runtime.context import _call, _gl, check_gl_error
from probewarp.runtime.cubearray import CubemapArray
from probewarp.runtime.resources import Releasable, readonly, released_on_error

__all__ = ["SHGridDecoderGL", "MAX_SH_ORDER", "TONEMAP_Y_MAX"]

#: Highest band ``sh_eval.glsl`` has polynomials for.
MAX_SH_ORDER = 6
#: Upper clip of the tonemapped value before inversion (float32 in GLSL:
#: 0.99999988, so saturated texels invert to ~3.8e6 instead of ~4.5e6).
TONEMAP_Y_MAX = constants.TONEMAP_Y_MAX
#: Work group edge (``LOCAL_SIZE`` of sh_decode.cs): 8 x 8 texels of one face.
LOCAL_SIZE = 8
#: Bytes of one query entry (std430 ``vec4``).
_QUERY_BYTES = 16


class SHGridDecoderGL(Releasable):
    """Decode a regular grid of SH probes into cubemaps at query positions, on GL.

    Parameters
    ----------
    ctx : moderngl.Context
        GL 4.5 core, current (e.g. :func:`probewarp.runtime.context.create_context`).
    coeffs : (P, K, 3) float
        Per probe, ``K = (L+1)^2`` coefficients per RGB channel in
        ``real_sh_basis`` order and in the fit ``domain``
        (``SphericalHarmonics.encode`` / ``project`` output), ``L <= 6``.
        Stored as float32.
    grid_shape : (3,) int
        ``(nx, ny, nz)``, ``P = nx * ny * nz``; probe ``(i * ny + j) * nz + k``.
    lo, hi : (3,) float
        Grid box: axis ``a`` has ``grid_shape[a]`` points from ``lo[a]`` to
        ``hi[a]`` (``hi`` is ignored on axes with one point).
    domain : {'linear', 'tonemap'}
        The baseline's ``domain``: 'tonemap' applies
        :func:`~probewarp.baker.metrics.inverse_tonemap` after evaluation,
        'linear' outputs the evaluated value as is (not clamped).
    gather_per_texel : bool, default True
        True: every shader invocation blends the 8 probes' coefficients
        itself (a deferred renderer's cost); False: once per 8 x 8 work group
        into shared memory (all its texels see the same query).

    Notes
    -----
    Queries outside the grid box take the border cell's values (the
    position is clamped into the box for the weights). A call decodes at
    most :attr:`max_queries` positions per dispatch (the GL's cube-map-array
    layer limit); :meth:`decode` splits larger lists.
    """

    def __init__(self, ctx: moderngl.Context, coeffs, grid_shape, lo, hi, domain: str,
                 gather_per_texel: bool = True):
        c = np.asarray(coeffs)
        if c.ndim != 3 or c.shape[2] != 3 or c.dtype.kind not in "fiu":
            raise InputError(f"coeffs must be (P, K, 3) numbers, got {c.shape} {c.dtype}")
        K = c.shape[1]
        L = int(round(np.sqrt(K))) - 1
        if L < 0 or sh_count(L) != K or L > MAX_SH_ORDER:
            raise InputError(f"coeffs must have K = (L+1)^2 per channel with 0 <= L <= "
                             f"{MAX_SH_ORDER}, got K = {K}")
        if not np.isfinite(c).all():
            raise InputError("coeffs hold non-finite values")
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
        g = Grid.checked(grid_shape, lo, hi, where="SHGridDecoderGL")
        shape, lo64, step = g.shape_array, g.lo, g.step
        if int(np.prod(shape)) != c.shape[0]:
            raise InputError(f"grid_shape {shape.tolist()} holds {int(np.prod(shape))} probes, "
                             f"coeffs has {c.shape[0]}")
        self._ctx = ctx
        self._order, self._K = L, K
        self._domain = domain
        self._gather = bool(gather_per_texel)
        self._shape = tuple(int(n) for n in shape)
        self._lo = tuple(float(v) for v in lo64)
        self._step = tuple(float(v) for v in step)
        GL = _gl()
        self._max_queries = min(int(GL.glGetIntegerv(GL.GL_MAX_ARRAY_TEXTURE_LAYERS)) // 6,
                                int(GL.glGetIntegeri_v(GL.GL_MAX_COMPUTE_WORK_GROUP_COUNT, 2)[0]) // 6)
        self._program = None
        self._coeff_buf = None
        self._query_buf = None
        self._target = None
        with released_on_error(self):
            self._program = _shaders.compute(ctx, "sh_decode.cs", {
                "PW_SH_ORDER": L,
                "PW_SH_GATHER_PER_TEXEL": self._gather,
                "PW_SH_DOMAIN_TONEMAP": domain == "tonemap",
                "PW_TONEMAP_GAMMA": float(constants.TONEMAP_GAMMA),
                "PW_TONEMAP_Y_MAX": float(TONEMAP_Y_MAX),
                "LOCAL_SIZE": LOCAL_SIZE,
            })
            self._coeff_buf = ctx.buffer(np.ascontiguousarray(c, np.float32).tobytes())
            for name, value in (("u_lo", self._lo), ("u_step", self._step),
                                ("u_shape", self._shape)):
                self._program[name] = value

    # -- properties ---------------------------------------------------------
    order = readonly("_order", "Highest band ``L``.")
    n_coefficients = readonly("_K", "``K = (L+1)^2`` coefficients per channel.")
    domain = readonly("_domain", "'linear' or 'tonemap'.")
    gather_per_texel = readonly("_gather", "Whether each invocation blends the 8 probes itself.")
    max_queries = readonly("_max_queries", "Most query positions one :meth:`dispatch` decodes.")

    def __repr__(self) -> str:
        return (f"SHGridDecoderGL(order={self._order}, grid_shape={self._shape}, "
                f"domain={self._domain!r}, gather_per_texel={self._gather})")

    # -- decoding -----------------------------------------------------------
    def _queries(self, positions) -> int:
        """Upload (Q, 3) positions into the query buffer (or take a Buffer); returns Q."""
        if isinstance(positions, moderngl.Buffer):
            if positions.size % _QUERY_BYTES:
                raise InputError(f"a positions buffer holds (Q, 4) float32 (16-byte vec4 "
                                 f"entries), got {positions.size} bytes")
            positions.bind_to_storage_buffer(1)
            return positions.size // _QUERY_BYTES
        p = np.asarray(positions, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3 or not np.isfinite(p).all():
            raise InputError(f"positions must be (Q, 3) finite floats, got {p.shape}")
        q = np.zeros((p.shape[0], 4), np.float32)
        q[:, :3] = p
        data = q.tobytes()
        if self._query_buf is None or self._query_buf.size < len(data):
            if self._query_buf is not None:
                self._query_buf.release()
            self._query_buf = self._ctx.buffer(reserve=max(len(data), _QUERY_BYTES))
        if data:
            self._query_buf.write(data)
        self._query_buf.bind_to_storage_buffer(1)
        return p.shape[0]

    def dispatch(self, positions, R: int) -> CubemapArray:
        """Decode without reading back (for timings): returns the target texture.

        Parameters
        ----------
        positions : (Q, 3) float array, or moderngl.Buffer
            World positions; a buffer holds ``(Q, 4)`` float32 (xyz, w
            unused), bound as is. ``1 <= Q <=`` :attr:`max_queries`.
        R : int
            Face size of the decoded cubemaps.

        Returns
        -------
        CubemapArray
            ``rgba32f``, ``Q`` layers of ``R x R``, owned by this decoder
            (reused while ``(Q, R)`` stay the same; released by
            :meth:`release`): layer ``q`` is query ``q``'s cubemap, RGB linear
            radiance, A = 1.

        Notes
        -----
        Issues ``glMemoryBarrier`` for texture fetches, texture updates
        (read-back) and image loads after the dispatch; does not wait for the
        GPU (``ctx.finish()`` does).
        """
        if self._program is None:
            raise RuntimeError("SHGridDecoderGL was released")
        R = int(R)
        if R < 1:
            raise ValueError(f"R must be >= 1, got {R}")
        Q = self._queries(positions)
        if not 1 <= Q <= self._max_queries:
            raise ValueError(f"dispatch decodes 1 to {self._max_queries} queries, got {Q}")
        t = self._target
        if t is None or t.resolution != R or t.layers != Q:
            if t is not None:
                t.release()
            self._target = None
            self._target = CubemapArray(self._ctx, R, Q, internal_format="rgba32f")
        GL = _gl()
        self._coeff_buf.bind_to_storage_buffer(0)
        _call("glBindImageTexture(0, rgba32f cube array, layered)", GL.glBindImageTexture,
              0, self._target.glo, 0, GL.GL_TRUE, 0, GL.GL_WRITE_ONLY, GL.GL_RGBA32F)
        self._program["u_R"] = R
        groups = (R + LOCAL_SIZE - 1) // LOCAL_SIZE
        self._program.run(groups, groups, 6 * Q)
        GL.glMemoryBarrier(GL.GL_TEXTURE_FETCH_BARRIER_BIT | GL.GL_TEXTURE_UPDATE_BARRIER_BIT
                           | GL.GL_SHADER_IMAGE_ACCESS_BARRIER_BIT)
        check_gl_error("sh_decode.cs dispatch", self._ctx)
        return self._target

    def decode(self, positions, R: int) -> np.ndarray:
        """Decoded cubemaps at ``positions``.

        Parameters
        ----------
        positions : (Q, 3) float
            World positions (any ``Q >= 0``; split into dispatches of at most
            :attr:`max_queries`).
        R : int
            Face size.

        Returns
        -------
        faces : (Q, 6, R, R, 3) float32
            Linear radiance, DESIGN-NOTES §1 layout: the 8-probe trilinear
            blend of the coefficients evaluated at the texel centres, through
            the domain's inverse mapping.
        """
        p = np.asarray(positions, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise InputError(f"positions must be (Q, 3), got {p.shape}")
        R = int(R)
        out = np.empty((p.shape[0], 6, R, R, 3), np.float32)
        for a in range(0, p.shape[0], self._max_queries):
            b = min(a + self._max_queries, p.shape[0])
            out[a:b] = self.dispatch(p[a:b], R).read()[..., :3]
        return out

    def release(self) -> None:
        """Free the program, buffers and target texture (idempotent)."""
        for name in ("_target", "_query_buf", "_coeff_buf", "_program"):
            obj = getattr(self, name, None)
            if obj is not None:
                setattr(self, name, None)
                obj.release()
