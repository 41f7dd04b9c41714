"""HDR image files in and out (EXR and Radiance ``.hdr``).

Files: OpenEXR through the official ``OpenEXR`` bindings, Radiance ``.hdr``
through OpenCV (``cv2.IMREAD_UNCHANGED``, which hands back BGR: flipped to RGB
here).
Layout conversions: :mod:`probewarp.baker.panorama`; folders of images:
:mod:`probewarp.baker.importer`. Writes are atomic (:mod:`probewarp.format.atomic`).

Notes
-----
* EXR layers other than a single R, G, B set (or Y) are not read; multi-part
  EXRs are read from their first part. No sRGB/LDR input; alpha is dropped.
"""
from __future__ import annotations

import errno
from pathlib import Path

import numpy as np

from probewarp.format import constants
from probewarp.format.atomic import atomic_path
from probewarp.format.errors import InputError

#: Largest image read (pixels): a 16384 x 8192 equirect panorama.
MAX_IMAGE_PIXELS = 1 << 27
#: zip/PIZ/... cannot shrink pixel data by more than this; a header whose
#: image would need more is corrupt (or a decompression bomb).
EXR_MAX_RATIO = 4096


class HdrImageError(InputError):
    """An image file could not be read or written (message names the file).
    An :class:`~probewarp.format.errors.InputError` (exit code 3), and a
    ``ValueError`` as before."""


def _check_pixels(p, width: int, height: int, min_bytes: int, size: int, what: str) -> None:
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        raise HdrImageError(f"{p}: field {what}: {width} x {height} pixels (1 to {MAX_IMAGE_PIXELS} pixels)")
    if min_bytes > size:
        raise HdrImageError(f"{p}: field {what}: {width} x {height} pixels need at least {min_bytes} bytes, "
                            f"the file has {size}")


def check_rgbe_header(p: Path) -> tuple[int, int]:
    """Parse a Radiance RGBE header (magic line, ``KEY=value`` lines, a blank
    line, the resolution line ``-Y H +X W``) and check the declared size
    against :data:`MAX_IMAGE_PIXELS` and the file's size (a scanline takes at
    least 4 bytes and, run-length encoded, 2 bytes a channel per 127 pixels):
    before OpenCV allocates anything. Returns ``(height, width)``."""
    import re
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(65536)
    if not head.startswith((b"#?RADIANCE", b"#?RGBE", b"#?AUTOPANO")):
        raise HdrImageError(f"{p}: field magic: not a Radiance .hdr file (no '#?RADIANCE' line)")
    end = head.find(b"\n\n")
    if end < 0:
        raise HdrImageError(f"{p}: field header: no blank line ending the header in its first 64 KiB")
    for line in head[:end].split(b"\n")[1:]:
        if line.startswith(b"FORMAT=") and line.strip() not in (b"FORMAT=32-bit_rle_rgbe",):
            raise HdrImageError(f"{p}: field FORMAT: {line.strip()[7:].decode('latin-1')!r} "
                                "(only 32-bit_rle_rgbe is read)")
    nl = head.find(b"\n", end + 2)
    res = head[end + 2:nl if nl >= 0 else len(head)]
    m = re.fullmatch(rb"\s*([-+])Y\s+(\d{1,9})\s+([-+])X\s+(\d{1,9})\s*", res)
    if m is None:
        raise HdrImageError(f"{p}: field resolution: {res[:40]!r} is not '-Y H +X W'")
    h, w = int(m.group(2)), int(m.group(4))
    per_line = 4 + 8 * -(-w // 127) if 8 <= w <= 0x7FFF else 4 * w
    _check_pixels(p, w, h, (nl + 1 if nl >= 0 else len(head)) + h * per_line, size, "resolution")
    return h, w


def check_exr_header(p: Path) -> None:
    """Parse an OpenEXR header (magic, version, attributes) and check every
    part's ``dataWindow`` against :data:`MAX_IMAGE_PIXELS` and the file's size
    (at most :data:`EXR_MAX_RATIO` : 1 compression; an 8-byte offset per
    scanline block or tile): before the OpenEXR bindings allocate pixels."""
    import struct
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(1 << 20)
    if head[:4] != b"\x76\x2f\x31\x01":
        raise HdrImageError(f"{p}: field magic: not an OpenEXR file")
    if len(head) < 8:
        raise HdrImageError(f"{p}: field version: truncated header")
    flags = head[5]
    multipart = bool(flags & 0x10)
    pos, parts, attrs = 8, [], {}
    while True:
        if pos >= len(head):
            raise HdrImageError(f"{p}: field header: truncated (no end of the attributes in the first MiB)")
        if head[pos] == 0:                  # end of a header
            pos += 1
            parts.append(attrs)
            attrs = {}
            if not multipart or (pos < len(head) and head[pos] == 0):
                break
            continue
        name_end = head.find(b"\0", pos, pos + 256)
        type_end = head.find(b"\0", name_end + 1, name_end + 257) if name_end >= 0 else -1
        if name_end < 0 or type_end < 0 or type_end + 5 > len(head):
            raise HdrImageError(f"{p}: field header: a malformed attribute at byte {pos}")
        name, typ = head[pos:name_end], head[name_end + 1:type_end]
        (n,) = struct.unpack_from("<i", head, type_end + 1)
        if n < 0 or type_end + 5 + n > len(head):
            raise HdrImageError(f"{p}: field {name.decode('latin-1')!r}: attribute size {n} runs past the header")
        attrs[name] = (typ, head[type_end + 5:type_end + 5 + n])
        pos = type_end + 5 + n
    for attrs in parts:
        typ, val = attrs.get(b"dataWindow", (None, b""))
        if typ != b"box2i" or len(val) != 16:
            raise HdrImageError(f"{p}: field dataWindow: missing or not a box2i")
        x0, y0, x1, y1 = struct.unpack("<4i", val)
        w, h = x1 - x0 + 1, y1 - y0 + 1
        typ, ch = attrs.get(b"channels", (None, b""))
        nch = max(1, ch.count(b"\0") // 2) if typ == b"chlist" else 1
        comp = attrs.get(b"compression", (None, b"\0"))[1][:1]
        raw = w * h * nch * 2
        min_bytes = (raw // EXR_MAX_RATIO) if comp != b"\0" else raw
        _check_pixels(p, w, h, pos + min_bytes, size, "dataWindow")


def _pick_exr_rgb(channels: dict, path) -> np.ndarray:
    names = list(channels)
    for prefix in [""] + sorted({n.rsplit(".", 1)[0] + "." for n in names if "." in n}):
        if all(prefix + c in channels for c in "RGB"):
            return np.stack([np.asarray(channels[prefix + c].pixels, np.float32) for c in "RGB"], axis=-1)
    for prefix in [""] + sorted({n.rsplit(".", 1)[0] + "." for n in names if "." in n}):
        if prefix + "Y" in channels:
            y = np.asarray(channels[prefix + "Y"].pixels, np.float32)
            return np.repeat(y[..., None], 3, axis=-1)
    raise HdrImageError(f"{path}: field channels: no R, G, B (or Y) channels; the file has {sorted(names)}")


def read_hdr_image(path) -> np.ndarray:
    """Read an ``.exr`` or Radiance ``.hdr`` image.

    Returns
    -------
    img : (H, W, 3) float32
        Linear RGB (a luminance-only EXR is repeated into three channels;
        alpha is dropped).

    Raises
    ------
    FileNotFoundError
    HdrImageError
        Unknown suffix, undecodable file, no colour channels.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(errno.ENOENT, "image not found", str(p))
    sfx = p.suffix.lower()
    if sfx == ".exr":
        import OpenEXR
        check_exr_header(p)
        try:
            with OpenEXR.File(str(p), separate_channels=True) as f:
                img = _pick_exr_rgb(f.channels(), p)
        except HdrImageError:
            raise
        except Exception as e:  # the bindings raise RuntimeError, sometimes others
            raise HdrImageError(f"{p}: not a readable OpenEXR file ({e})") from e
    elif sfx in (".hdr", ".pic"):
        import cv2
        check_rgbe_header(p)
        try:
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        except cv2.error as e:
            raise HdrImageError(f"{p}: not a readable Radiance .hdr file ({e})") from None
        if img is None:
            raise HdrImageError(f"{p}: not a readable Radiance .hdr file (OpenCV could not decode it)")
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        elif img.shape[2] >= 3:
            img = img[..., 2::-1]  # OpenCV is BGR
        else:
            raise HdrImageError(f"{p}: unexpected {img.shape[2]}-channel image")
        if img.dtype.kind != "f":
            raise HdrImageError(f"{p}: decoded as {img.dtype}, not floating point (not an HDR file?)")
    else:
        raise HdrImageError(f"{p}: unsupported image type {p.suffix!r} (expected .exr or .hdr)")
    return np.ascontiguousarray(img, dtype=np.float32)


def write_exr(path, img: np.ndarray, *, half: bool = False) -> Path:
    """Write an image as an OpenEXR file (ZIP compression), atomically.

    Parameters
    ----------
    img : (H, W, 3) or (H, W) float
        RGB channels ``R, G, B``, or one ``Y`` channel.
    half : bool
        Store float16 (``HALF``) instead of float32. Finite values above
        ``constants.FP16_MAX`` raise rather than turning into infinity.

    Returns
    -------
    Path written. Inverse twin: :func:`read_hdr_image`.
    """
    import OpenEXR
    p = Path(path)
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 3:
        chans = {c: a[..., i] for i, c in enumerate("RGB")}
    elif a.ndim == 2:
        chans = {"Y": a}
    else:
        raise ValueError(f"{p}: image must be (H, W, 3) or (H, W), got {a.shape}")
    dt = np.float16 if half else np.float32
    if half:
        big = np.isfinite(a) & (np.abs(a) > constants.FP16_MAX)
        if big.any():
            raise HdrImageError(f"{p}: {int(big.sum())} values exceed the float16 maximum "
                                f"{constants.FP16_MAX:g}; write float32 (half=False)")
    chans = {k: np.ascontiguousarray(v, dtype=dt) for k, v in chans.items()}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(p) as tmp, OpenEXR.File(header, chans) as f:
        f.write(str(tmp))
    return p


def write_hdr(path, img: np.ndarray) -> Path:
    """Write ``(H, W, 3)`` float RGB as a Radiance ``.hdr`` (RGBE: ~1 % relative precision, no negatives)."""
    import cv2
    p = Path(path)
    a = np.asarray(img, np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{p}: image must be (H, W, 3), got {a.shape}")
    with atomic_path(p) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(a[..., ::-1])):
            raise HdrImageError(f"{p}: OpenCV could not write the file")
    return p
