"""Stored texel formats of prototypes and quantised blend weights.

Encoder/decoder twins: :func:`encode` packs ``(..., 3)`` float texels into the
GPU-ready array a format uploads as is; :func:`decode` is its exact inverse
on the CPU, and the GPU's sampler is the same inverse on the runtime side.

====== ============ ============================ ==============================
name   bytes/texel  stored array                 GL internal format
====== ============ ============================ ==============================
rgba32f 16          (..., 4) float32, A = 1      GL_RGBA32F (lossless)
rgba16f 8           (..., 4) float16, A = 1      GL_RGBA16F
rgb9e5  4           (...,) uint32, packed        GL_RGB9_E5
rgba8   4           (..., 4) uint8, A = 255      GL_RGBA8 (blend domain [0, 1])
bc7     1           (..., R/4, R/4, 16) uint8     GL_COMPRESSED_RGBA_BPTC_UNORM
bc6h    1           (..., R/4, R/4, 16) uint8     GL_COMPRESSED_RGB_BPTC_UNSIGNED_FLOAT
====== ============ ============================ ==============================

``rgba8`` and ``bc7`` are only meaningful for the tonemapped blend domain, whose values
lie in [0, 1). RGB9E5 follows the EXT_texture_shared_exponent reference
encoder (round to nearest), so the driver's packing and ours agree bit for bit.
``bc6h`` (BPTC unsigned float) holds HDR values in either domain: non-negative
half floats up to 65504; negative values and NaN store 0, larger values and
+inf 65504. It decodes to float16 values (exactly what Mesa's sampler returns).
Block formats store 4x4 blocks of 16 bytes, row-major, per face.

Blend weights are stored as unsigned 8-bit fixed point (``q / 128``).
"""
from __future__ import annotations

import numpy as np

FORMATS = {
    "rgba32f": {"bytes_per_texel": 16, "gl": "GL_RGBA32F"},
    "rgba16f": {"bytes_per_texel": 8, "gl": "GL_RGBA16F"},
    "rgb9e5": {"bytes_per_texel": 4, "gl": "GL_RGB9_E5"},
    "rgba8": {"bytes_per_texel": 4, "gl": "GL_RGBA8"},
    "bc7": {"bytes_per_texel": 1, "gl": "GL_COMPRESSED_RGBA_BPTC_UNORM", "block": 4},
    "bc6h": {"bytes_per_texel": 1, "gl": "GL_COMPRESSED_RGB_BPTC_UNSIGNED_FLOAT", "block": 4},
}
#: Formats that store [0, 1] values only (the tonemapped blend domain).
UNIT_RANGE = ("rgba8", "bc7")
#: BC7 encoder quality profile of ispc_texcomp (ISPCTextureCompressor).
BC7_PROFILE = "basic"
#: BC6H encoder quality profile of ispc_texcomp. Measured on 256 probes of
#: the built-in scene, (256, 6, 16, 16, 3), one core: "fast" 0.07 s, 41.0 dB
#: (DESIGN-NOTES §5 PSNR of the round trip); "basic" 0.18 s, 41.0 dB (+0.03);
#: "slow" 0.74 s, 41.2 dB; "veryfast" 0.01 s, 35.9 dB. The encode runs once
#: per bake (the quantisation-aware finish), where 0.2 s is noise: "basic",
#: as for BC7.
BC6H_PROFILE = "basic"
#: Largest finite value BC6H (unsigned) stores: the largest float16.
BC6H_MAX = 65504.0
#: Texel formats stored as 4x4 blocks of 16 bytes.
BLOCK_FORMATS = ("bc7", "bc6h")


def stored_layout(fmt: str, R: int):
    """Shape suffix and dtype of one face of ``R x R`` texels stored as ``fmt``."""
    _check(fmt)
    if fmt in BLOCK_FORMATS:
        if R % 4:
            raise ValueError(f"{fmt} needs a face resolution divisible by 4, not {R}")
        return (R // 4, R // 4, 16), np.dtype(np.uint8)
    return (R, R) + ((4,) if fmt != "rgb9e5" else ()), np.dtype(
        {"rgba32f": np.float32, "rgba16f": np.float16, "rgba8": np.uint8, "rgb9e5": np.uint32}[fmt])


def _bc7_encode(v):
    import ispc_texcomp
    lead, R = v.shape[:-3], v.shape[-2]
    faces = v.reshape(-1, R, R, 3)
    out = np.empty((faces.shape[0], R // 4, R // 4, 16), np.uint8)
    settings = ispc_texcomp.BC7EncSettings.from_profile(BC7_PROFILE)
    rgba = np.full((R, R, 4), 255, np.uint8)
    for i, f in enumerate(faces):
        rgba[..., :3] = np.round(np.clip(f, 0.0, 1.0) * 255.0)
        surf = ispc_texcomp.RGBASurface(rgba.tobytes(), R, R, R * 4)
        out[i] = np.frombuffer(ispc_texcomp.compress_blocks_bc7(surf, settings), np.uint8).reshape(R // 4, R // 4, 16)
    return out.reshape(lead + out.shape[1:])


def _bc7_decode(s):
    import imagecodecs
    lead, B = s.shape[:-3], s.shape[-3]
    R = 4 * B
    blocks = s.reshape(-1, B, B, 16)
    out = np.empty((blocks.shape[0], R, R, 3), np.float32)
    for i, b in enumerate(blocks):
        out[i] = imagecodecs.bcn_decode(b.tobytes(), 7, shape=(R, R, 4))[..., :3] / np.float32(255.0)
    return out.reshape(lead + (R, R, 3))


def _bc6h_encode(v):
    """(..., R, R, 3) float32 -> (..., R/4, R/4, 16) uint8 BC6H (unsigned) blocks."""
    import ispc_texcomp
    lead, R = v.shape[:-3], v.shape[-2]
    stored_layout("bc6h", R)  # R % 4
    faces = v.reshape(-1, R, R, 3)
    n = faces.shape[0]
    if n == 0:
        return np.empty(lead + (R // 4, R // 4, 16), np.uint8)
    # ISPC's surface holds RGBA float16 (8 bytes a texel). Its unsigned encoder
    # reads the half bit patterns: -0.0 and negatives come out as 65504, so
    # clamp here to +0.0 (NaN too) and to BC6H_MAX (+inf too).
    c = np.where(faces > 0.0, np.minimum(faces, BC6H_MAX), 0.0)
    # All faces stacked into one R-wide surface: blocks come out row-major,
    # i.e. face after face (the same bytes as one call per face, one call).
    rgba = np.ones((n * R, R, 4), np.float16)
    rgba[..., :3] = c.reshape(n * R, R, 3)
    surf = ispc_texcomp.RGBASurface(rgba.tobytes(), R, n * R, R * 8)
    settings = ispc_texcomp.BC6HEncSettings.from_profile(BC6H_PROFILE)
    out = np.frombuffer(ispc_texcomp.compress_blocks_bc6h(surf, settings), np.uint8)
    return out.reshape(lead + (R // 4, R // 4, 16)).copy()


def _bc6h_decode(s):
    """(..., B, B, 16) uint8 -> (..., 4B, 4B, 3) float32 (float16 values)."""
    import imagecodecs
    lead, B = s.shape[:-3], s.shape[-3]
    R = 4 * B
    n = int(np.prod(lead, dtype=np.int64))
    if n == 0:
        return np.empty(lead + (R, R, 3), np.float32)
    blocks = np.ascontiguousarray(s, np.uint8).reshape(n * B, B, 16)  # one R-wide, n*R-tall image
    # format 6 = BC6HU (unsigned); imagecodecs returns (n*R, R, 3) float16
    out = imagecodecs.bcn_decode(blocks.tobytes(), 6, shape=(n * R, R, 3))
    return out.astype(np.float32).reshape(lead + (R, R, 3))

#: Stored weights are 8-bit fixed point, ``w = q / WEIGHT_ONE``: 1.0 is exact
#: (a constant field round-trips), range [0, 255/128], steps of 1/128.
WEIGHT_ONE = 128.0
WEIGHT_MAX = 255.0 / WEIGHT_ONE

_E5_BIAS, _E5_MANT, _E5_MAXEXP = 15, 9, 31
_E5_MAX = (2 ** _E5_MANT - 1) / 2 ** _E5_MANT * 2.0 ** (_E5_MAXEXP - _E5_BIAS)


def _check(fmt):
    if fmt not in FORMATS:
        raise ValueError(f"unknown texel format {fmt!r}; known: {', '.join(FORMATS)}")


def encode(texels: np.ndarray, fmt: str) -> np.ndarray:
    """Pack ``(..., 3)`` float texels into ``fmt``'s stored array (see table).

    Block formats (bc7, bc6h) need whole faces: ``(..., R, R, 3)``."""
    _check(fmt)
    v = np.asarray(texels, dtype=np.float32)
    if fmt == "bc7":
        return _bc7_encode(v)
    if fmt == "bc6h":
        return _bc6h_encode(v)
    if fmt == "rgba32f":
        out = np.ones(v.shape[:-1] + (4,), np.float32)
        out[..., :3] = v
        return out
    if fmt == "rgba16f":
        out = np.ones(v.shape[:-1] + (4,), np.float16)
        out[..., :3] = np.clip(v, -65504, 65504).astype(np.float16)
        return out
    if fmt == "rgba8":
        out = np.full(v.shape[:-1] + (4,), 255, np.uint8)
        out[..., :3] = np.round(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)
        return out
    # rgb9e5, EXT_texture_shared_exponent reference encoder
    c = np.clip(np.nan_to_num(v.astype(np.float64)), 0.0, _E5_MAX)
    maxc = c.max(axis=-1)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.maximum(maxc, 2.0 ** (-_E5_BIAS - 1)))).astype(np.int64)
    exp_shared = np.maximum(-_E5_BIAS - 1, e) + 1 + _E5_BIAS
    denom = 2.0 ** (exp_shared - _E5_BIAS - _E5_MANT)
    maxm = np.floor(maxc / denom + 0.5)
    bump = maxm == 2 ** _E5_MANT
    denom = np.where(bump, denom * 2, denom)
    exp_shared = np.where(bump, exp_shared + 1, exp_shared)
    m = np.floor(c / denom[..., None] + 0.5).astype(np.uint32)
    return (m[..., 0] | (m[..., 1] << 9) | (m[..., 2] << 18) | (exp_shared.astype(np.uint32) << 27)).astype(np.uint32)


def decode(stored: np.ndarray, fmt: str) -> np.ndarray:
    """Inverse of :func:`encode`: ``(..., 3)`` float32."""
    _check(fmt)
    s = np.asarray(stored)
    if fmt == "bc7":
        return _bc7_decode(s)
    if fmt == "bc6h":
        return _bc6h_decode(s)
    if fmt in ("rgba16f", "rgba32f"):
        return s[..., :3].astype(np.float32)
    if fmt == "rgba8":
        return s[..., :3].astype(np.float32) / 255.0
    s = s.astype(np.uint32)
    e = ((s >> 27) & 31).astype(np.int64)
    scale = 2.0 ** (e - _E5_BIAS - _E5_MANT)
    m = np.stack([s & 511, (s >> 9) & 511, (s >> 18) & 511], axis=-1).astype(np.float64)
    return (m * scale[..., None]).astype(np.float32)


def roundtrip(texels: np.ndarray, fmt: str, domain: str = "tonemap") -> np.ndarray:
    """What the GPU will see of ``texels`` once stored as ``fmt``: ``decode(encode(x))``."""
    if fmt in UNIT_RANGE and domain != "tonemap":
        raise ValueError(f"{fmt} stores [0, 1] values: it needs the tonemapped blend domain")
    return decode(encode(texels, fmt), fmt)


def encode_weights(w: np.ndarray) -> np.ndarray:
    """(P, N) float -> (P, N) uint8 fixed point ``round(w * WEIGHT_ONE)`` (clamped to [0, WEIGHT_MAX])."""
    return np.round(np.clip(np.asarray(w, np.float64), 0.0, WEIGHT_MAX) * WEIGHT_ONE).astype(np.uint8)


def decode_weights(q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_weights`: (P, N) float32."""
    return (np.asarray(q, np.float32) / np.float32(WEIGHT_ONE)).astype(np.float32)


def quantize_weights(w: np.ndarray) -> np.ndarray:
    """``decode_weights(encode_weights(w))``."""
    return decode_weights(encode_weights(w))


def index_dtype(n_values: int):
    """Smallest unsigned numpy dtype that holds indices into ``n_values`` entries
    (uint8 up to 256, uint16 up to 65536): the archive's prototype indices and
    the VQ baseline's codes."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n_values - 1 <= np.iinfo(dt).max:
            return dt
    return np.uint64


# --- prototype mip chains ------------------------------------------------------------
def mip_level_count(Rp: int, R: int, fmt: str) -> int:
    """Mip levels of a prototype chain: down to the probes' resolution,
    ``1 + log2(Rp / R)`` when ``Rp / R`` is a power of two (else 1), at most
    ``Rp.bit_length()``, and for block formats only levels of whole 4x4 blocks."""
    _check(fmt)
    Rp, R = int(Rp), max(1, int(R))
    k = max(1, Rp // R)
    levels = k.bit_length() if k & (k - 1) == 0 else 1   # 1 + log2(k)
    levels = max(1, min(levels, Rp.bit_length()))
    if fmt in BLOCK_FORMATS:
        while levels > 1 and (Rp >> (levels - 1)) % 4:
            levels -= 1
    return levels


def downsample_box(faces: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` texel blocks of every face.

    Parameters
    ----------
    faces : (..., R, R, C) with R divisible by ``factor``

    Returns
    -------
    (..., R // factor, R // factor, C), float32 or float64 (as the input;
    accumulated in float64).

    Notes
    -----
    An unweighted box: sub-texels of one texel differ in solid angle by less
    than the texel's own variation, which is what the GPU's mip chain does too.
    The one box filter of the project: mip chains here, and the baker's
    super-resolution and capture downsampling (:mod:`probewarp.baker.cubemap`).
    """
    faces = np.asarray(faces)
    R = faces.shape[-3]
    if factor < 1 or R % factor:
        raise ValueError(f"resolution {R} is not divisible by factor {factor}")
    if factor == 1:
        return faces
    r = R // factor
    shp = faces.shape[:-3] + (r, factor, r, factor, faces.shape[-1])
    return faces.reshape(shp).mean(axis=(-4, -2), dtype=np.float64).astype(
        np.promote_types(faces.dtype, np.float32))


def mip_chain(stored: np.ndarray, fmt: str, levels: int) -> list[np.ndarray]:
    """Level 0 as stored, then ``levels - 1`` levels, each the 2x2 box filter of
    the previous one in the blend domain (starting from ``decode(stored)``),
    encoded in ``fmt``. What format version 3 archives store per page (the
    writer calls it; block formats need the encoder, ispc_texcomp) and what the
    reader computes for older files of uncompressed formats (numpy only)."""
    out = [stored]
    if levels > 1:
        v = decode(stored, fmt)
        for _ in range(1, int(levels)):
            v = downsample_box(v, 2)
            out.append(encode(v, fmt))
    return out
