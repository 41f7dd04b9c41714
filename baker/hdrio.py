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


class HdrImageError(ValueError):
    """An image file could not be read or written (message names the file)."""


def _pick_exr_rgb(channels: dict, path) -> np.ndarray:
    names = list(channels)
    for prefix in [""] + sorted({n.rsplit(".", 1)[0] + "." for n in names if "." in n}):
        if all(prefix + c in channels for c in "RGB"):
            return np.stack([np.asarray(channels[prefix + c].pixels, np.float32) for c in "RGB"], axis=-1)
    for prefix in [""] + sorted({n.rsplit(".", 1)[0] + "." for n in names if "." in n}):
        if prefix + "Y" in channels:
            y = np.asarray(channels[prefix + "Y"].pixels, np.float32)
            return np.repeat(y[..., None], 3, axis=-1)
    raise HdrImageError(f"{path}: no R, G, B (or Y) channels; the file has {sorted(names)}")


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
        try:
            with OpenEXR.File(str(p), separate_channels=True) as f:
                img = _pick_exr_rgb(f.channels(), p)
        except HdrImageError:
            raise
        except Exception as e:  # the bindings raise RuntimeError, sometimes others
            raise HdrImageError(f"{p}: not a readable OpenEXR file ({e})") from e
    elif sfx in (".hdr", ".pic"):
        import cv2
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise HdrImageError(f"{p}: not a readable Radiance .hdr file")
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
