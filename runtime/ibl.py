"""Image-based lighting from decoded cubemaps: the prefilter a host renderer runs
after :class:`~probewarp.runtime.decode.CubemapDecoder` to shade diffuse and
rough surfaces with the field.

A mirror needs the decoded radiance itself (decode in the reflected direction,
or sample the decoded cubemap); a Lambertian surface needs the irradiance
around its normal, a rough one a lobe around its reflected direction.
:class:`Prefilter` (``shaders/prefilter_cubemap.cs``) computes

    out(n) = sum_l L(l) max(n.l, 0)^p dw(l) / sum_l max(n.l, 0)^p dw(l)

over all texels ``l`` of one mip level of the input (a small one: the cost
is ``6 R_out^2 x 6 R_in^2`` per cubemap, so ``R_in = 8`` is the default):
``p = 1`` gives ``E / pi`` (multiply by the albedo for a Lambertian surface's
radiance), ``p > 1`` a normalised Phong lobe. Its numpy twin is
``tests/naive.py::naive_prefilter_cube``.

Left out on purpose: GGX importance sampling and split-sum BRDF tables (a
host has its own); for probe fields of R = 8..32 the brute-force sum over a
small level is exact and cheap.
"""
from __future__ import annotations

from probewarp.runtime import shaders
from probewarp.runtime.context import _gl, check_gl_error
from probewarp.runtime.cubearray import CubemapArray
from probewarp.runtime.resources import Releasable

#: Phong exponents of the two lobes the demo uses.
DIFFUSE_EXPONENT = 1.0
ROUGH_EXPONENT = 16.0


class Prefilter(Releasable):
    """Lobe-weighted prefilter of cube-map-array layers on the GPU.

    Parameters
    ----------
    ctx : moderngl.Context
    exponent : float
        ``p`` of the lobe (1: irradiance / pi).
    """

    LOCAL = 8

    def __init__(self, ctx, exponent: float):
        self.ctx = ctx
        self.exponent = float(exponent)
        if not self.exponent >= 1.0:
            raise ValueError(f"exponent must be >= 1, got {exponent}")
        self.program = shaders.compute(ctx, "prefilter_cubemap.cs", {"LOCAL_SIZE": self.LOCAL})

    def run(self, src: CubemapArray, dst: CubemapArray, *, level: int = 0, count: int | None = None,
            first_in: int = 0, first_out: int = 0) -> None:
        """Filter layers ``first_in..+count`` of ``src`` (mip ``level``) into layers
        ``first_out..+count`` of ``dst`` (level 0). Both rgba32f."""
        GL = _gl()
        for name, arr in (("src", src), ("dst", dst)):
            if arr.internal_format != "rgba32f":
                raise ValueError(f"{name} must be rgba32f, got {arr.internal_format}")
        count = src.layers - first_in if count is None else int(count)
        if first_in + count > src.layers or first_out + count > dst.layers or count < 1:
            raise ValueError(f"layers out of range: {count} from {first_in} of {src.layers} "
                             f"into {first_out} of {dst.layers}")
        r_in = max(1, src.resolution >> int(level))
        GL.glBindImageTexture(0, src.glo, int(level), GL.GL_TRUE, 0, GL.GL_READ_ONLY, GL.GL_RGBA32F)
        GL.glBindImageTexture(1, dst.glo, 0, GL.GL_TRUE, 0, GL.GL_WRITE_ONLY, GL.GL_RGBA32F)
        p = self.program
        for name, value in (("u_in_res", r_in), ("u_out_res", dst.resolution), ("u_exponent", self.exponent),
                            ("u_first_in", int(first_in)), ("u_first_out", int(first_out)),
                            ("u_count", count)):
            p[name].value = value
        g = -(-dst.resolution // self.LOCAL)
        p.run(g, g, 6 * count)
        GL.glMemoryBarrier(GL.GL_TEXTURE_FETCH_BARRIER_BIT | GL.GL_SHADER_IMAGE_ACCESS_BARRIER_BIT)
        check_gl_error("prefilter_cubemap.cs", self.ctx)

    def release(self) -> None:
        if self.program is not None:
            self.program.release()
            self.program = None
