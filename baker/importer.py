"""Folders of 360-degree HDR images <-> probe sets: :func:`import_folder` (with a
``name,x,y,z`` positions CSV) and :func:`export_exr_folder`.

Images: :mod:`probewarp.baker.hdrio`; layouts: :mod:`probewarp.baker.panorama`.
"""
from __future__ import annotations

import csv
import errno
import math
import os
import shutil
from pathlib import Path

import numpy as np

from probewarp.baker import config
from probewarp.baker.hdrio import HdrImageError, read_hdr_image, write_exr
from probewarp.baker.panorama import LAYOUTS, cube_to_cross, cube_to_equirect, detect_layout, image_to_cube
from probewarp.baker.probeset import ProbeSet
from probewarp.baker.validation import ProbeSetError
from probewarp.format import constants
from probewarp.format.atomic import atomic_path, temp_beside
from probewarp.format.errors import RuntimeFailure


def _read_positions_csv(csv_path: Path):
    """Rows ``(line, name, (x, y, z))`` of a ``name,x,y,z`` CSV (header optional)."""
    rows = []
    seen = {}
    try:
        fh = open(csv_path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ProbeSetError(f"cannot read the CSV ({e})", file=csv_path) from e
    with fh:
        reader = csv.reader(fh)
        first = True
        try:
            for row in reader:
                line = reader.line_num
                cells = [c.strip() for c in row]
                if not cells or all(c == "" for c in cells) or cells[0].startswith("#"):
                    continue
                if first:
                    first = False
                    if [c.lower() for c in cells] == ["name", "x", "y", "z"]:
                        continue
                if len(cells) != 4:
                    raise ProbeSetError(f"expected 4 fields 'name,x,y,z', got {len(cells)}: {row!r}",
                                        file=csv_path, line=line, field="row")
                name = cells[0]
                if not name:
                    raise ProbeSetError("empty probe name", file=csv_path, line=line, field="name")
                xyz = []
                for axis, c in zip("xyz", cells[1:]):
                    try:
                        val = float(c)
                    except ValueError:
                        raise ProbeSetError(f"{c!r} is not a number", file=csv_path, line=line,
                                            name=name, field=axis) from None
                    if not math.isfinite(val):
                        raise ProbeSetError(f"{c!r} is not finite", file=csv_path, line=line,
                                            name=name, field=axis)
                    xyz.append(val)
                if name in seen:
                    raise ProbeSetError(f"name listed twice (first on line {seen[name]})",
                                        file=csv_path, line=line, name=name, field="name")
                seen[name] = line
                rows.append((line, name, tuple(xyz)))
        except (csv.Error, UnicodeDecodeError) as e:
            raise ProbeSetError(f"not a readable CSV ({e})", file=csv_path,
                                line=getattr(reader, "line_num", None)) from e
    if not rows:
        raise ProbeSetError("no probes listed (expected rows 'name,x,y,z')", file=csv_path)
    return rows


def _inside(root: str, path: Path) -> bool:
    """Whether ``path``, every symbolic link followed, lies inside the real folder ``root``."""
    real = os.path.realpath(path)
    return os.path.commonpath([root, real]) == root


def _list_images(folder: Path) -> dict:
    """``{file name: Path}`` of the ``.exr`` / ``.hdr`` files in ``folder`` (a symbolic link is
    listed as a file when it points at one, inside the folder or not: :func:`_resolve_image`
    refuses the ones that lead outside)."""
    return {p.name: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in config.HDR_SUFFIXES and p.is_file()}


def _resolve_image(folder: Path, images: dict, by_stem: dict, name: str):
    """The image a CSV name refers to: ``folder/name`` or ``folder/name.{exr,hdr}``; (Path, None) or (None, why).

    Crafted names stay in the folder: a name with a path separator (``../x``, ``/etc/x``,
    ``sub/x``), ``.``/``..`` or a NUL is refused, and so is an image that is a symbolic link
    leading outside the folder (the folder's own path may run through links)."""
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name or os.path.isabs(name):
        return None, f"name {name!r} is not a plain file name (images are read from {folder} only)"
    p, why = _find_image(folder, images, by_stem, name)
    if p is not None:
        root = os.path.realpath(folder)
        if not _inside(root, p):
            return None, (f"{p.name} is a symbolic link to {os.path.realpath(p)}, outside {folder}: refused "
                          f"(images are read from the folder only)")
    return p, why


def _find_image(folder: Path, images: dict, by_stem: dict, name: str):
    if name in images:
        return images[name], None
    found = by_stem.get(name, [])
    if len(found) == 1:
        return found[0], None
    if len(found) > 1:
        return None, f"ambiguous: several images are named {name!r}: {[p.name for p in found]}"
    if (folder / name).is_symlink() and not _inside(os.path.realpath(folder), folder / name):
        return None, (f"{name} is a symbolic link to {os.path.realpath(folder / name)}, outside {folder}: "
                      f"refused (images are read from the folder only)")
    if (folder / name).is_dir():
        return None, f"{folder / name} is a folder, not an .exr or .hdr file"
    if (folder / name).is_file():
        return None, f"{folder / name} is not an .exr or .hdr file"
    return None, f"no image {name!r} (nor {name}.exr / {name}.hdr) in {folder}"


def import_folder(folder, csv_path, R: int, layout: str = "auto", *,
                  supersample: int = config.IMPORT_SUPERSAMPLE, dtype=np.float32,
                  strict: bool = True, validate: bool = True, progress=None) -> ProbeSet:
    """Build a probe set from a folder of 360-degree HDR images and a CSV of positions.

    Parameters
    ----------
    folder : str or Path
        Holds one ``.exr`` / ``.hdr`` image per probe.
    csv_path : str or Path
        Rows ``name,x,y,z`` (an optional ``name,x,y,z`` header, blank lines
        and ``#`` comment lines are skipped). ``name`` is a file in ``folder``,
        with or without its ``.exr`` / ``.hdr`` suffix.
    R : int
        Face resolution of the set.
    layout : ``'auto'``, ``'equirect'`` or ``'cross'``
        ``'auto'``: the first image decides (``W = 2 H`` equirect, ``3 W = 4 H``
        cross) and every other image must have the same layout (sizes may
        differ: each is resampled to ``R``).
    supersample : int
        See :func:`equirect_to_cube`.
    dtype : float32 or float16
        Of the returned ``faces``.
    strict : bool
        Reject ``.exr`` / ``.hdr`` files in ``folder`` that the CSV does not
        list.
    validate : bool
        Run :func:`probeset.validate` on the result (errors then carry the
        CSV line too). ``False`` lets a caller sanitise instead.
    progress : callable or None
        ``progress(done, total)`` after each probe (the command line draws a bar).

    Returns
    -------
    ProbeSet
        ``positions`` ``(P, 3)`` float32 in CSV order, ``faces``
        ``(P, 6, R, R, 3)``, ``names`` from the CSV, ``source`` the CSV
        path, no grid description.

    Raises
    ------
    FileNotFoundError
        No CSV, or ``folder`` is not a directory.
    ProbeSetError
        ``CSV:LINE: probe I ('NAME'): FIELD: detail`` for a bad row, a
        missing, unreadable or mislaid-out image, a name listed twice, two
        names for one file, unlisted images (``strict``), float16 overflow.
    """
    folder, csv_path = Path(folder), Path(csv_path)
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "image folder not found", str(folder))
    if not csv_path.is_file():
        raise FileNotFoundError(errno.ENOENT, "positions CSV not found", str(csv_path))
    if layout not in ("auto",) + LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (expected 'auto', 'equirect' or 'cross')")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float16 or float32, got {dtype}")
    rows = _read_positions_csv(csv_path)
    images = _list_images(folder)
    by_stem: dict = {}
    for p in images.values():
        by_stem.setdefault(p.stem, []).append(p)
    files, used = [], {}
    for i, (line, name, _) in enumerate(rows):
        p, why = _resolve_image(folder, images, by_stem, name)
        if p is None:
            raise ProbeSetError(why, file=csv_path, line=line, probe=i, name=name, field="image")
        if p in used:
            raise ProbeSetError(f"{p.name} is already the image of line {used[p]}",
                                file=csv_path, line=line, probe=i, name=name, field="image")
        used[p] = line
        files.append(p)
    if strict:
        extra = sorted(n for n, p in images.items() if p not in used)
        if extra:
            more = f" ... ({len(extra) - 10} more)" if len(extra) > 10 else ""
            raise ProbeSetError(f"images in {folder} that the CSV does not list: {extra[:10]}{more} "
                                f"(strict=False ignores them)", file=csv_path, field="names")
    P = len(rows)
    positions = np.array([xyz for _, _, xyz in rows], np.float64).astype(np.float32)
    faces = np.empty((P, 6, R, R, 3), dtype)
    first = None  # (layout, line, file)
    for i in range(P):
        line, name, _ = rows[i]
        p = files[i]
        where = dict(file=csv_path, line=line, probe=i, name=name, field="image")
        try:
            img = read_hdr_image(p)
        except (OSError, ValueError, RuntimeError) as e:
            raise ProbeSetError(f"cannot read {p}: {e}", **where) from e
        lay = detect_layout(img.shape)
        if lay is None:
            raise ProbeSetError(f"{p} is {img.shape[1]}x{img.shape[0]} pixels: neither equirect (W = 2 H) "
                                f"nor a horizontal cross (3 W = 4 H)", **where)
        if layout != "auto" and lay != layout:
            raise ProbeSetError(f"{p} is laid out as {lay!r} ({img.shape[1]}x{img.shape[0]}), "
                                f"not {layout!r}", **where)
        if first is None:
            first = (lay, line, p)
        elif lay != first[0]:
            raise ProbeSetError(f"{p} is laid out as {lay!r} ({img.shape[1]}x{img.shape[0]}) but "
                                f"{first[2]} (line {first[1]}) is {first[0]!r}; all images must share "
                                f"one layout", **where)
        cube = image_to_cube(img, R, lay, supersample)
        if dtype == np.float16:
            big = np.isfinite(cube) & (cube > constants.FP16_MAX)
            if big.any():
                raise ProbeSetError(f"{int(big.sum())} values of {p} exceed the float16 maximum "
                                    f"{constants.FP16_MAX:g}; import as float32", **where)
        faces[i] = cube
        if progress is not None:
            progress(i + 1, P)
    ps = ProbeSet(positions, faces, names=[n for _, n, _ in rows], source=str(csv_path))
    if validate:
        try:
            ps.validate()
        except ProbeSetError as e:
            if e.probe is None:
                raise
            line = rows[e.probe][0]
            raise ProbeSetError(e.detail + f" (image {files[e.probe]})", file=csv_path, line=line,
                                probe=e.probe, name=e.name, field=e.field) from e
    return ps


def _export_file_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ValueError(f"probe name {name!r} cannot be a file name")
    return name if name.lower().endswith(".exr") else name + ".exr"


def export_exr_folder(probeset: ProbeSet, folder, layout: str = "cross", *, height: int | None = None,
                      half: bool = False, csv_name: str = "positions.csv",
                      progress=None) -> list:
    """Write one EXR per probe plus ``positions.csv``, for inspection and round trips.

    Parameters
    ----------
    probeset : ProbeSet
        Lazy sets are read chunk-wise.
    folder : str or Path
        Created if missing; files of the same names are replaced. The export is
        built in a temporary folder beside it and moved in when complete: on any
        failure nothing is left (no partial folder, no stray images).
    layout : ``'cross'`` or ``'equirect'``
        ``'cross'``: ``(3 R, 4 R)`` images holding the faces exactly.
        ``'equirect'``: ``(height, 2 height)`` images (resampled, see
        :func:`cube_to_equirect`).
    height : int, optional
        Equirect height; default ``2 R``.
    half : bool
        float16 EXR channels (values above ``constants.FP16_MAX`` raise).
    csv_name : str
        The CSV written beside the images: ``name,x,y,z`` with a header,
        coordinates printed with 9 significant digits (float32 exact).

    Returns
    -------
    list of Path: the images (probe order), then the CSV.

    Notes
    -----
    File names are the probe names (``.exr`` appended unless present) or
    ``probe_000000.exr`` ...; the CSV lists the names as :func:`import_folder`
    resolves them, so ``import_folder(folder, folder / csv_name, R)`` reads
    the export back (exactly for ``'cross'`` with float32).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (expected 'cross' or 'equirect')")
    P, R = probeset.n_probes, probeset.resolution
    height = 2 * R if height is None else int(height)
    if probeset.names is not None:
        names = list(probeset.names)
    else:
        width = max(6, len(str(P - 1)))
        names = [f"probe_{i:0{width}d}" for i in range(P)]
    fnames = [_export_file_name(n) for n in names]
    if len(set(fnames)) != len(fnames):
        raise ValueError("probe names map to duplicate file names")
    if csv_name in fnames:
        raise ValueError(f"a probe name collides with the CSV name {csv_name!r}")
    folder = Path(folder)
    # Built in a temporary folder beside the target and moved in when complete, so a failure
    # (a probe that cannot be written, a full disk, an interrupt) leaves no partial export: a new
    # folder appears whole (one rename); into an existing one the files move one by one.
    made = [d for d in [folder.parent, *folder.parent.parents] if not d.exists()]
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(folder)
    try:
        tmp.mkdir()
        _write_export(probeset, tmp, folder, fnames, names, layout, height, half, csv_name, progress)
        if folder.exists():
            for f in fnames + [csv_name]:
                os.replace(tmp / f, folder / f)
            tmp.rmdir()
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in made:                  # the folders made for it, innermost first, if still empty
            try:
                d.rmdir()
            except OSError:
                break
        raise
    return [folder / f for f in fnames] + [folder / csv_name]


def _write_export(probeset, folder: Path, final: Path, fnames, names, layout, height, half, csv_name,
                  progress):
    """The export's files into ``folder`` (its temporary); messages name ``final``."""
    P = probeset.n_probes
    for start, _, block in probeset.iter_chunks():
        for j in range(len(block)):
            i = start + j
            cube = block[j].astype(np.float32)
            img = cube_to_cross(cube) if layout == "cross" else cube_to_equirect(cube, height)
            try:
                write_exr(folder / fnames[i], img, half=half)
            except HdrImageError as e:
                raise ProbeSetError(str(e), file=probeset.source, probe=i, name=probeset.probe_name(i),
                                    field="faces") from e
            except RuntimeError as e:   # OpenEXR's write failures (full disk ...): a RuntimeError
                why = str(e).rsplit('". ', 1)[-1].rstrip(".")
                raise RuntimeFailure(f"{final / fnames[i]}: cannot write the image ({why})") from None
            if progress is not None:
                progress(i + 1, P)
    csv_path = folder / csv_name
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "x", "y", "z"])
        for n, p in zip(names, np.asarray(probeset.positions, np.float32)):
            w.writerow([n] + [f"{float(v):.9g}" for v in p])
