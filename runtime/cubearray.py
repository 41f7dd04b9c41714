"""The raw cube-map-array texture of the runtime.

moderngl 5.13 has no cube-map arrays (/work/shared/PITFALLS.md), so
:class:`CubemapArray` makes a ``GL_TEXTURE_CUBE_MAP_ARRAY`` with PyOpenGL
calls on the context moderngl made current. Shaders bind it with
``layout(binding = N) uniform samplerCubeArray ...;`` and Python calls
:meth:`CubemapArray.bind` with the same ``N`` (moderngl silently ignores
setting a ``samplerCubeArray`` uniform's value).

Memory layout: a probe set's faces ``(P, 6, R, R, C)`` (DESIGN-NOTES §1) are
exactly what ``glTexSubImage3D(GL_TEXTURE_CUBE_MAP_ARRAY, ...)`` expects, with
layer-face ``6 * p + f`` at depth ``6 * p + f``: no flips, no reordering. The
CPU twin of what the sampler does is :func:`probewarp.baker.cubemap.sample_cube`.
Prototypes already in an archive's stored texel format
(:mod:`probewarp.format.texformats`) upload as is with
:meth:`CubemapArray.upload_stored`; the texture decodes them as
:func:`probewarp.format.texformats.decode` does (bit for bit on llvmpipe, but
for 1 float32 ulp on unorm8 formats).

Notes
-----
Raw GL state this module touches (texture binding of the unit it uses, pixel
(un)pack parameters and buffer bindings) is saved and restored around each
call, so moderngl's own state tracking stays valid. Textures are not released
in ``__del__``: the context may already be gone then. Call
:meth:`CubemapArray.release` (or use it as a context manager).
"""
from __future__ import annotations

import contextlib
import ctypes

import numpy as np
import moderngl

from probewarp.format import texformats
from probewarp.runtime.context import _call, _gl, check_gl_error
from probewarp.runtime.resources import Releasable, readonly, released_on_error

#: Internal formats :class:`CubemapArray` accepts, by name -> GL enum name:
#: the texel formats of :data:`probewarp.format.texformats.FORMATS`, same names,
#: same enums (``tests/test_gl_cubearray.py`` checks).
INTERNAL_FORMATS = {
    "rgba16f": "GL_RGBA16F",
    "rgba32f": "GL_RGBA32F",
    # Shared-exponent RGB: 4 bytes a texel. Upload float data (the driver
    # packs) or the packed uint32 through upload_stored (raw GL; it is
    # moderngl that rejects packed RGB9E5 data, PITFALLS.md).
    "rgb9e5": "GL_RGB9_E5",
    "rgba8": "GL_RGBA8",
    "bc7": "GL_COMPRESSED_RGBA_BPTC_UNORM",
    "bc6h": "GL_COMPRESSED_RGB_BPTC_UNSIGNED_FLOAT",
}
#: Formats :meth:`CubemapArray.upload` fills from float texels (the others take
#: their stored form through :meth:`CubemapArray.upload_stored`).
FLOAT_UPLOAD_FORMATS = ("rgba16f", "rgba32f", "rgb9e5")
#: Block-compressed formats (4x4 blocks of 16 bytes, ``glCompressedTexSubImage3D``).
COMPRESSED_FORMATS = ("bc7", "bc6h")
#: Pixel transfer ``(format, type)`` of each uncompressed stored layout
#: (:func:`probewarp.format.texformats.stored_layout`).
_STORED_TRANSFER = {
    "rgba16f": ("GL_RGBA", "GL_HALF_FLOAT"),            # (..., 4) float16
    "rgba32f": ("GL_RGBA", "GL_FLOAT"),                 # (..., 4) float32
    "rgb9e5": ("GL_RGB", "GL_UNSIGNED_INT_5_9_9_9_REV"),  # (...,) uint32, E in the top 5 bits
    "rgba8": ("GL_RGBA", "GL_UNSIGNED_BYTE"),           # (..., 4) uint8
}


def _max_levels(R: int, internal_format: str) -> int:
    """Mip levels a ``R x R`` texture of ``internal_format`` may have.

    ``floor(log2 R) + 1``; for block formats only the levels whose faces are
    whole 4x4 blocks (``R >> level`` divisible by 4), so that every level has
    a stored layout to upload.
    """
    if internal_format not in COMPRESSED_FORMATS:
        return R.bit_length()
    n = 0
    while (R >> n) >= 4 and (R >> n) % 4 == 0:
        n += 1
    return n


@contextlib.contextmanager
def _pixel_store(GL, pack: bool):
    """Tightly packed pixel transfer from client memory; restores GL state after."""
    if pack:
        buf_target, buf_binding = GL.GL_PIXEL_PACK_BUFFER, GL.GL_PIXEL_PACK_BUFFER_BINDING
        names = ("GL_PACK_ALIGNMENT", "GL_PACK_ROW_LENGTH", "GL_PACK_IMAGE_HEIGHT",
                 "GL_PACK_SKIP_PIXELS", "GL_PACK_SKIP_ROWS", "GL_PACK_SKIP_IMAGES")
    else:
        buf_target, buf_binding = GL.GL_PIXEL_UNPACK_BUFFER, GL.GL_PIXEL_UNPACK_BUFFER_BINDING
        names = ("GL_UNPACK_ALIGNMENT", "GL_UNPACK_ROW_LENGTH", "GL_UNPACK_IMAGE_HEIGHT",
                 "GL_UNPACK_SKIP_PIXELS", "GL_UNPACK_SKIP_ROWS", "GL_UNPACK_SKIP_IMAGES")
    enums = [getattr(GL, n) for n in names]
    saved = [int(GL.glGetIntegerv(e)) for e in enums]
    saved_buf = int(GL.glGetIntegerv(buf_binding))
    GL.glBindBuffer(buf_target, 0)  # else the data pointer is read as a buffer offset
    for e in enums:
        GL.glPixelStorei(e, 1 if e == enums[0] else 0)
    try:
        yield
    finally:
        for e, v in zip(enums, saved):
            GL.glPixelStorei(e, v)
        GL.glBindBuffer(buf_target, saved_buf)


class CubemapArray(Releasable):
    """A ``GL_TEXTURE_CUBE_MAP_ARRAY`` of ``layers`` cubemaps, ``R x R`` per face.

    Parameters
    ----------
    ctx : moderngl.Context
        Must be current (raw GL calls go to the current context).
    resolution : int
        ``R``, face width and height of level 0.
    layers : int
        Number of cubemaps (texture depth ``6 * layers``).
    internal_format : {"rgba16f", "rgba32f", "rgb9e5", "rgba8", "bc7", "bc6h"}
        The texel formats of :mod:`probewarp.format.texformats`. The float
        formats fill from float texels (:meth:`upload`); every format fills
        from its stored form as is (:meth:`upload_stored`): ``rgba8`` and
        ``bc7`` hold [0, 1] values (the tonemapped blend domain), ``bc6h``
        non-negative HDR values. ``bc7`` and ``bc6h`` need ``R`` divisible
        by 4.
    levels : int
        Mip levels, ``1 <= levels <= floor(log2 R) + 1``; for ``bc7`` and
        ``bc6h`` only levels of whole 4x4 blocks (``R >> level`` divisible
        by 4: at most 3 for R = 16). Storage is immutable
        (``glTexStorage3D``); fill the levels with :meth:`upload`,
        :meth:`upload_stored` or (not for ``bc7``/``bc6h``)
        :meth:`generate_mipmaps`.

    Notes
    -----
    Filtering is linear (``GL_LINEAR``; ``GL_LINEAR_MIPMAP_LINEAR`` for the
    minifier when ``levels > 1``), wrapping clamp-to-edge (ignored across
    faces under seamless filtering, which
    :func:`probewarp.runtime.context.create_context` enables).
    Sampled layer ``p`` in GLSL is ``texture(tex, vec4(dir, p))``; the values
    match :func:`probewarp.baker.cubemap.sample_cube` on ``faces[p]`` to within
    the GPU's bilinear-weight precision (``tests/test_gl_cubearray.py``
    measures it). No border colour, no anisotropy: left out on purpose.
    """

    def __init__(self, ctx: moderngl.Context, resolution: int, layers: int,
                 internal_format: str = "rgba16f", levels: int = 1):
        GL = _gl()
        R, layers, levels = int(resolution), int(layers), int(levels)
        if internal_format not in INTERNAL_FORMATS:
            raise ValueError(f"internal_format must be one of {sorted(INTERNAL_FORMATS)}, "
                             f"got {internal_format!r}")
        if R < 1 or layers < 1:
            raise ValueError(f"resolution and layers must be >= 1, got {R}, {layers}")
        if internal_format in COMPRESSED_FORMATS and R % 4:
            raise ValueError(f"{internal_format} needs a resolution divisible by 4 (4x4 blocks), got {R}")
        max_levels = _max_levels(R, internal_format)
        if not 1 <= levels <= max_levels:
            raise ValueError(f"levels must be in [1, {max_levels}] for R={R} ({internal_format}), "
                             f"got {levels}")
        max_layers = int(GL.glGetIntegerv(GL.GL_MAX_ARRAY_TEXTURE_LAYERS)) // 6
        max_size = int(GL.glGetIntegerv(GL.GL_MAX_CUBE_MAP_TEXTURE_SIZE))
        if layers > max_layers or R > max_size:
            raise ValueError(f"{layers} layers of {R}^2 exceed this GL's limits "
                             f"({max_layers} cube layers, {max_size}^2 faces)")
        self._ctx = ctx
        self._R, self._layers, self._levels = R, layers, levels
        self._format = internal_format
        self._glo = 0
        check_gl_error("GL state before CubemapArray creation (not probewarp's)", ctx)
        glo = int(_call("glGenTextures", GL.glGenTextures, 1))
        self._glo = glo
        ifmt = getattr(GL, INTERNAL_FORMATS[internal_format])
        T = GL.GL_TEXTURE_CUBE_MAP_ARRAY
        with released_on_error(self), self._bound(GL):
            _call(f"glTexStorage3D({INTERNAL_FORMATS[internal_format]}, levels={levels}, "
                  f"{R}x{R}x{6 * layers})", GL.glTexStorage3D, T, levels, ifmt, R, R, 6 * layers)
            min_filter = GL.GL_LINEAR_MIPMAP_LINEAR if levels > 1 else GL.GL_LINEAR
            for pname, value in ((GL.GL_TEXTURE_MIN_FILTER, min_filter),
                                 (GL.GL_TEXTURE_MAG_FILTER, GL.GL_LINEAR),
                                 (GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE),
                                 (GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE),
                                 (GL.GL_TEXTURE_WRAP_R, GL.GL_CLAMP_TO_EDGE),
                                 (GL.GL_TEXTURE_BASE_LEVEL, 0),
                                 (GL.GL_TEXTURE_MAX_LEVEL, levels - 1)):
                _call("glTexParameteri", GL.glTexParameteri, T, pname, value)

    # -- properties ---------------------------------------------------------
    glo = readonly("_glo", "GL texture name (0 once released).")
    resolution = readonly("_R", "``R``, face size of level 0.")
    layers = readonly("_layers", "Number of cubemaps.")
    levels = readonly("_levels", "Number of mip levels allocated.")
    internal_format = readonly("_format", "One of :data:`INTERNAL_FORMATS`' keys.")

    def __repr__(self) -> str:
        return (f"CubemapArray(glo={self._glo}, resolution={self._R}, layers={self._layers}, "
                f"internal_format={self._format!r}, levels={self._levels})")

    # -- validation ---------------------------------------------------------
    def _level_size(self, level: int) -> int:
        """``r = max(1, R >> level)``, face size of an allocated ``level``."""
        if not 0 <= level < self._levels:
            raise ValueError(f"level must be in [0, {self._levels}), got {level}")
        return max(1, self._R >> level)

    def _check_layers(self, layer_start: int, n: int) -> None:
        """Cubemaps ``[layer_start, layer_start + n)`` must lie in ``[0, layers)``."""
        if layer_start < 0 or layer_start + n > self._layers:
            raise ValueError(f"layers [{layer_start}, {layer_start + n}) out of [0, {self._layers})")

    # -- GL -----------------------------------------------------------------
    @contextlib.contextmanager
    def _bound(self, GL):
        """Bind on moderngl's scratch texture unit; restore that unit's binding after."""
        if not self._glo:
            raise RuntimeError("CubemapArray was released")
        saved_unit = int(GL.glGetIntegerv(GL.GL_ACTIVE_TEXTURE))
        GL.glActiveTexture(GL.GL_TEXTURE0 + self._ctx.default_texture_unit)
        saved = int(GL.glGetIntegerv(GL.GL_TEXTURE_BINDING_CUBE_MAP_ARRAY))
        GL.glBindTexture(GL.GL_TEXTURE_CUBE_MAP_ARRAY, self._glo)
        try:
            yield
        finally:
            GL.glBindTexture(GL.GL_TEXTURE_CUBE_MAP_ARRAY, saved)
            GL.glActiveTexture(saved_unit)

    def upload(self, layer_start: int, data: np.ndarray, level: int = 0) -> None:
        """Write ``n`` whole cubemaps, starting at layer ``layer_start``.

        Parameters
        ----------
        layer_start : int
            First cubemap written (``zoffset = 6 * layer_start``).
        data : (n, 6, r, r, C) float16 or float32, C in {3, 4}
            ``r = max(1, R >> level)``; DESIGN-NOTES §1 layout, uploaded as is
            with one ``glTexSubImage3D``. Three channels leave alpha at 1 when
            sampled. float64 is converted to float32. For ``rgba16f``,
            float32 data is rounded to nearest float16 here (clamped to
            +-65504), not by the driver (Mesa truncates), so the texture holds
            exactly ``data.astype(float16)``. For ``rgb9e5`` the driver packs
            the float data per EXT_texture_shared_exponent (negative values
            become 0, values above 65408 clamp; exact to the spec's encoder on
            llvmpipe).
        level : int
            Mip level written.

        Raises
        ------
        ValueError
            For ``rgba8``, ``bc7`` and ``bc6h`` textures: they take their
            stored form, ``upload_stored(layer_start, texformats.encode(x, fmt))``.
        """
        GL = _gl()
        if self._format not in FLOAT_UPLOAD_FORMATS:
            raise ValueError(f"upload() takes float texels for {', '.join(FLOAT_UPLOAD_FORMATS)} "
                             f"textures; a {self._format} texture takes its stored form: "
                             f"upload_stored(layer_start, texformats.encode(texels, {self._format!r}))")
        data = np.asarray(data)
        if data.dtype == np.float64:
            data = data.astype(np.float32)
        if data.dtype not in (np.float16, np.float32):
            raise TypeError(f"data must be float16 or float32, got {data.dtype}")
        r = self._level_size(level)
        if data.ndim != 5 or data.shape[1:4] != (6, r, r) or data.shape[4] not in (3, 4):
            raise ValueError(f"data must be (n, 6, {r}, {r}, 3 or 4) for level {level}, "
                             f"got {data.shape}")
        n = data.shape[0]
        if n == 0:
            return
        self._check_layers(layer_start, n)
        if self._format == "rgba16f" and data.dtype == np.float32:
            # Round to nearest on the CPU: Mesa converts float -> half by
            # truncation (measured on llvmpipe: half the texels 1 ulp low).
            # Values beyond +-65504 clamp (numpy would give inf).
            fp16_max = float(np.finfo(np.float16).max)
            data = np.clip(data, -fp16_max, fp16_max).astype(np.float16)
        data = np.ascontiguousarray(data)
        fmt = GL.GL_RGBA if data.shape[4] == 4 else GL.GL_RGB
        typ = GL.GL_HALF_FLOAT if data.dtype == np.float16 else GL.GL_FLOAT
        ptr = ctypes.c_void_p(data.ctypes.data)  # float16 has no PyOpenGL type mapping
        with self._bound(GL), _pixel_store(GL, pack=False):
            _call(f"glTexSubImage3D(level={level}, zoffset={6 * layer_start}, "
                  f"{r}x{r}x{6 * n}, {data.dtype})", GL.glTexSubImage3D,
                  GL.GL_TEXTURE_CUBE_MAP_ARRAY, level, 0, 0, 6 * int(layer_start),
                  r, r, 6 * n, fmt, typ, ptr)

    def upload_stored(self, layer_start: int, stored: np.ndarray, level: int = 0, *,
                      fmt: str | None = None) -> None:
        """Write ``n`` whole cubemaps already in the texture's stored texel format.

        No conversion: the bytes go to GL as they are, in one call
        (``glTexSubImage3D``, or ``glCompressedTexSubImage3D`` for ``bc7`` /
        ``bc6h``), and the texture then samples as
        ``texformats.decode(stored, internal_format)``: bit-exact on llvmpipe
        except ``rgba8``/``bc7``, within 1 float32 ulp (``tests/test_gl_cubearray.py``).

        Parameters
        ----------
        layer_start : int
            First cubemap written (``zoffset = 6 * layer_start``).
        stored : (n, 6) + face_shape, dtype
            ``face_shape, dtype = texformats.stored_layout(internal_format, r)``
            with ``r = max(1, R >> level)``, e.g. the output of
            :func:`probewarp.format.texformats.encode`: ``rgba16f`` (r, r, 4)
            float16 (``GL_RGBA``/``GL_HALF_FLOAT``), ``rgba32f`` (r, r, 4)
            float32 (``GL_FLOAT``), ``rgb9e5`` (r, r) packed uint32
            (``GL_RGB``/``GL_UNSIGNED_INT_5_9_9_9_REV``), ``rgba8`` (r, r, 4)
            uint8 (``GL_UNSIGNED_BYTE``), ``bc7``/``bc6h`` (r/4, r/4, 16)
            uint8 blocks.
        level : int
            Mip level written.
        fmt : str, optional
            The texel format ``stored`` is in (an archive's ``texel_format``).
            When given it must equal :attr:`internal_format`: ``bc7`` and
            ``bc6h`` blocks have the same shape and dtype, so only the name
            tells them apart.

        Raises
        ------
        ValueError
            ``fmt`` is not the texture's format; ``stored``'s shape or dtype
            is not the texture's stored layout at ``level``; layers out of
            range.
        """
        GL = _gl()
        ifmt_name = self._format
        if fmt is not None and fmt != ifmt_name:
            raise ValueError(f"stored texels are {fmt!r} but the texture is {ifmt_name!r}: "
                             f"formats must match (no conversion in upload_stored)")
        r = self._level_size(level)
        face_shape, dtype = texformats.stored_layout(ifmt_name, r)
        stored = np.asarray(stored)
        if stored.shape[1:] != (6,) + face_shape or stored.dtype != dtype:
            raise ValueError(f"a {ifmt_name} texture at level {level} takes stored texels "
                             f"(n, 6, {', '.join(map(str, face_shape))}) {dtype} "
                             f"(texformats.stored_layout), got {stored.shape} {stored.dtype}")
        n = stored.shape[0]
        if n == 0:
            return
        self._check_layers(layer_start, n)
        data = np.ascontiguousarray(stored)
        T, z = GL.GL_TEXTURE_CUBE_MAP_ARRAY, 6 * int(layer_start)
        where = f"level={level}, zoffset={z}, {r}x{r}x{6 * n}, {ifmt_name}"
        with self._bound(GL), _pixel_store(GL, pack=False):
            if ifmt_name in COMPRESSED_FORMATS:
                # PyOpenGL takes the array and works out imageSize itself (PITFALLS.md)
                _call(f"glCompressedTexSubImage3D({where})", GL.glCompressedTexSubImage3D,
                      T, level, 0, 0, z, r, r, 6 * n, getattr(GL, INTERNAL_FORMATS[ifmt_name]), data)
            else:
                # The raw binding (plain void* data): PyOpenGL's wrapper maps the
                # pixel type to an array type and has none for
                # GL_UNSIGNED_INT_5_9_9_9_REV (KeyError).
                from OpenGL.raw.GL.VERSION.GL_1_2 import glTexSubImage3D  # noqa: PLC0415
                pfmt, ptype = (getattr(GL, e) for e in _STORED_TRANSFER[ifmt_name])
                _call(f"glTexSubImage3D({where})", glTexSubImage3D, T, level, 0, 0, z,
                      r, r, 6 * n, pfmt, ptype, ctypes.c_void_p(data.ctypes.data))

    def read(self, level: int = 0) -> np.ndarray:
        """Read a whole level back (``glGetTexImage``), for tests and debugging.

        Returns
        -------
        (layers, 6, r, r, 4) float32
            ``r = max(1, R >> level)``; what the texture stores, decoded to
            float by the driver (fp16 / RGB9E5 rounding included; unorm8 as
            ``q / 255`` for rgba8 and bc7; BC6H to float16 values; alpha 1 for
            rgb9e5 and bc6h).
        """
        GL = _gl()
        r = self._level_size(level)
        out = np.empty((self._layers, 6, r, r, 4), np.float32)
        with self._bound(GL), _pixel_store(GL, pack=True):
            _call(f"glGetTexImage(level={level})", GL.glGetTexImage,
                  GL.GL_TEXTURE_CUBE_MAP_ARRAY, level, GL.GL_RGBA, GL.GL_FLOAT,
                  ctypes.c_void_p(out.ctypes.data))
        return out

    def queried_bytes(self) -> int:
        """Bytes of all allocated levels as GL reports them (per level: the
        compressed image size for block formats, else width x height x depth x
        the bytes of the internal format GL says it holds)."""
        GL = _gl()
        T = GL.GL_TEXTURE_CUBE_MAP_ARRAY
        per_texel = {GL.GL_RGBA16F: 8, GL.GL_RGBA32F: 16, GL.GL_RGB9_E5: 4, GL.GL_RGBA8: 4}
        total = 0
        with self._bound(GL):
            for lvl in range(self._levels):
                q = lambda pname: int(GL.glGetTexLevelParameteriv(T, lvl, pname))  # noqa: E731
                if q(GL.GL_TEXTURE_COMPRESSED):
                    total += q(GL.GL_TEXTURE_COMPRESSED_IMAGE_SIZE)
                else:
                    fmt = q(GL.GL_TEXTURE_INTERNAL_FORMAT)
                    if fmt not in per_texel:
                        raise RuntimeError(f"GL reports internal format {hex(fmt)} for {self!r}")
                    total += (q(GL.GL_TEXTURE_WIDTH) * q(GL.GL_TEXTURE_HEIGHT) * q(GL.GL_TEXTURE_DEPTH)
                              * per_texel[fmt])
        return total

    def bind(self, unit: int) -> None:
        """Bind to texture unit ``unit`` (the GLSL ``layout(binding = unit)``).

        Leaves ``GL_ACTIVE_TEXTURE`` as it was.
        """
        GL = _gl()
        if not self._glo:
            raise RuntimeError("CubemapArray was released")
        saved_unit = int(GL.glGetIntegerv(GL.GL_ACTIVE_TEXTURE))
        GL.glActiveTexture(GL.GL_TEXTURE0 + int(unit))
        _call(f"glBindTexture(unit={unit})", GL.glBindTexture, GL.GL_TEXTURE_CUBE_MAP_ARRAY, self._glo)
        GL.glActiveTexture(saved_unit)

    def generate_mipmaps(self) -> None:
        """Fill levels ``1..levels-1`` from level 0 (``glGenerateMipmap``: the
        driver's 2x2 box filter per face, no filtering across faces).

        Raises
        ------
        ValueError
            For ``bc7`` and ``bc6h``. GL ES 3 forbids it for compressed
            formats; desktop GL leaves it to the driver. Mesa llvmpipe
            accepts it but decodes, filters and re-encodes with its own BPTC
            encoder: measured on 32 built-in scene probes (R = 16), level 1
            is off the box average of level 0 by 11% (bc6h) and 4.8% (bc7)
            mean relative error, against 3.5% and 1.1% when ispc_texcomp
            (:func:`probewarp.format.texformats.encode`) encodes that box
            average. Encode each level on the CPU
            (``texformats.encode`` of box-filtered faces) and
            :meth:`upload_stored` it with ``level=k``.
        """
        if self._format in COMPRESSED_FORMATS:
            raise ValueError(f"generate_mipmaps() does not do block-compressed {self._format}: "
                             f"encode each level on the CPU (texformats.encode of the box-filtered "
                             f"faces) and upload_stored(..., level=k) it")
        GL = _gl()
        with self._bound(GL):
            _call("glGenerateMipmap(GL_TEXTURE_CUBE_MAP_ARRAY)", GL.glGenerateMipmap,
                  GL.GL_TEXTURE_CUBE_MAP_ARRAY)

    def release(self) -> None:
        """Delete the GL texture (idempotent)."""
        if self._glo:
            GL = _gl()
            glo, self._glo = self._glo, 0
            _call("glDeleteTextures", GL.glDeleteTextures, 1, [glo])
