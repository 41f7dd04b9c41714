"""The ``probewarp`` command line: parses options, calls the library, prints.

Exit codes (documented in the README and in ``--help``):

====  ==========================================================
0     success
2     usage error (unknown option, missing argument)
3     bad input (a file, probe or field is invalid; nothing written)
4     runtime failure (GL context, disk, a worker died, ...)
====  ==========================================================
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import sys
import time
from pathlib import Path

from probewarp.baker import config
from probewarp.baker.config import DEFAULT_HALO, DEFAULT_TEXEL_FORMAT, FALLBACK_TEXEL_FORMAT
from probewarp.format import errors
from probewarp.format.errors import InputError, ProbewarpError

EPILOG = """exit codes: 0 ok, 2 usage error, 3 bad input (nothing is written), 4 runtime failure.
Conventions (cubemap faces, probe-set layout, warp, metrics): see README and docs/."""


def _progress(desc: str, total: int | None = None, unit: str = "probe"):
    """A tqdm bar on stderr; silent when stderr is not a terminal."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr, dynamic_ncols=True)


def _bar_update(bar):
    """A library ``progress(done, total)`` callback that moves ``bar``."""
    def update(done, total):
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
    return update


def _err(msg: str) -> None:
    print(f"probewarp: error: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------
# argument and path checks: bad input fails before any work, nothing written
# ---------------------------------------------------------------------------

#: The suffixes of probe-set outputs (ProbeSet.save).
PROBESET_SUFFIXES = (".npz", ".zarr")
#: The outputs this run checked (:func:`_check_writable`): an OSError without a file name
#: (zipfile, zarr and matplotlib writes raise those) is reported against the last one.
_OUTPUTS: list = []
#: Folders that did not exist when the outputs were checked (innermost first): a command
#: that fails removes the ones still empty, so that it leaves nothing behind.
_MADE: list = []


def _at_least(value, option: str, lo: int = 1):
    """``value`` (an int option) checked to be ``>= lo``; InputError naming the option."""
    if value is not None and int(value) < lo:
        raise InputError(f"{option} {value}: must be at least {lo}")
    return value


def _finite(values, option: str):
    """Float options checked to be finite; InputError naming the option."""
    if values is not None and not np.all(np.isfinite(np.asarray(values, np.float64))):
        raise InputError(f"{option} {' '.join(str(v) for v in values)}: must be finite numbers")
    return values


def _output_dir_of(out: Path, label=None) -> Path:
    """The nearest existing folder above ``out`` (where its temporary will live); InputError
    when something above ``out`` exists but is not a folder."""
    d = Path(out).absolute().parent
    while not (d.exists() or d.is_symlink()):
        d = d.parent
    if not d.is_dir():
        raise InputError(f"{label or out}: cannot write there: {d} is not a folder")
    return d


def _check_writable(out, folder_ok: bool = False, label=None) -> Path:
    """Fail before any work when ``out`` cannot be written: nothing that is not a folder may
    stand above it, and its folder (or the nearest existing one above, where the writer creates
    the rest) must accept a new file. A non-folder in the way, or a folder where a file goes
    (``folder_ok`` False), is bad input (exit 3); a folder that refuses files (permissions,
    read-only, full) is a runtime failure (exit 4). Probes by creating and removing a uniquely
    named empty file (``os.access`` says yes to root on read-only file systems)."""
    import os
    import uuid
    from probewarp.format.errors import RuntimeFailure
    out = Path(out)
    if out.is_dir() and not folder_ok:
        raise InputError(f"{out}: is a folder, not a file")
    d = _output_dir_of(out, label)
    probe = d / f".probewarp-write-test-{uuid.uuid4().hex[:12]}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        raise RuntimeFailure(f"{label or out}: cannot write to {d} ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    _OUTPUTS.append(label or out)
    _remember_made(([Path(label)] if label is not None else []) + list(out.absolute().parents))
    return out


def _remember_made(folders) -> None:
    """Note the ``folders`` that do not exist yet: a failed command removes those it
    made, if still empty (:func:`_remove_made_folders`)."""
    for f in folders:
        f = Path(f).absolute()
        if not f.exists() and f not in _MADE:
            _MADE.append(f)


def _remove_made_folders() -> None:
    for d in sorted(_MADE, key=lambda f: len(f.parts), reverse=True):      # innermost first
        if d.is_dir() and not d.is_symlink():
            try:
                d.rmdir()
            except OSError:
                continue


def _probeset_output(out) -> Path:
    """``-o`` of a probe set: ends in .npz or .zarr, and writable."""
    out = Path(out)
    if not str(out).lower().endswith(PROBESET_SUFFIXES):
        raise InputError(f"{out}: a probe set ends in .npz or .zarr")
    _check_writable(out, folder_ok=str(out).lower().endswith(".zarr"))
    out.parent.mkdir(parents=True, exist_ok=True)     # ProbeSet.save writes into an existing folder
    return out


def _folder_output(out) -> Path:
    """An output folder: not an existing file, and writable."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    _check_writable(out / "x", label=out)
    return out


def _load_probeset(path, **kw):
    """:meth:`ProbeSet.load`, its errors as bad input naming the file: a missing path,
    a path of no probe-set kind (a folder that is no .zarr, another suffix), one that
    cannot be read (permissions)."""
    from probewarp.baker.probeset import ProbeSet
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        raise InputError(f"{path}: no such file")
    if path.is_dir() and not path.name.lower().endswith(".zarr"):
        raise InputError(f"{path}: is a folder, not a probe set (.npz file or .zarr folder)")
    if path.name.lower().endswith(".npz") and not path.is_file():
        raise InputError(f"{path}: is not a file (a .npz probe set is one)")
    try:
        return ProbeSet.load(path, **kw)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the probe set ({getattr(e, 'strerror', None) or e})") from None


def _prototypes(args, default: int) -> bool:
    """Fill in --prototypes (its default, M, is None so that an explicit value can be told
    apart); True when it was given."""
    explicit = args.prototypes is not None
    if not explicit:
        args.prototypes = default
    return explicit


def _check_codec(args, n_probes: int | None, R: int | None, src) -> None:
    """M, N and Rp of bake/compare/demo, checked before any work (exit 3, naming the option).

    ``n_probes``: the set's size, to refuse an explicit M above it (the default M is capped
    per page by the probes it is fitted on, as pages smaller than M are); None: not checked."""
    M, N = int(args.prototypes), int(args.taps)
    _at_least(M, "--prototypes")
    if not 1 <= N <= 16:
        raise InputError(f"--taps {N}: must be in 1..16")
    if N > M:
        raise InputError(f"--taps {N}: more than --prototypes {M} (a probe blends N distinct prototypes)")
    if n_probes is not None and M > n_probes:
        raise InputError(f"{src}: --prototypes {M}: more than the {n_probes} probes of the set "
                         f"(each prototype is learned from probes)")
    Rp = getattr(args, "prototype_res", None)
    if Rp is not None:
        _at_least(Rp, "--prototype-res")
        if R is not None and Rp > R and Rp % R:
            raise InputError(f"{src}: --prototype-res {Rp}: must be a multiple of the probe resolution "
                             f"R = {R} (or at most R)")
    it = getattr(args, "iterations", None)
    if it is not None:
        _at_least(it, "--iterations")
    if getattr(args, "page_probes", None) is not None:
        _at_least(args.page_probes, "--page-probes")


def _fmt_summary(summary: dict) -> str:
    width = max(len(k) for k in summary)
    lines = []
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        lines.append(f"  {k:<{width}}  {v}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------

def _load_scene(spec: str, seed: int):
    """The SCENE argument: 'builtin', 'builtin:SEED' or a mesh file; every way it can be
    wrong is bad input naming it (trimesh raises a zoo of types for unreadable files)."""
    from probewarp.capture.scene import Scene
    if spec == "builtin":
        return Scene.builtin(seed=seed)
    if spec.startswith("builtin:"):
        try:
            return Scene.from_spec(spec)
        except ValueError as e:
            raise InputError(f"{spec}: {e}") from None
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: scene file not found")
    if not path.is_file():
        raise InputError(f"{spec}: scene: not a file (an OBJ / glTF / GLB mesh file)")
    try:
        with open(path, "rb"):
            pass
        scene = Scene.load(path)
    except ImportError:
        raise
    except OSError as e:
        raise InputError(f"{spec}: cannot read the scene ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 (trimesh: ValueError, NotImplementedError, KeyError, ...)
        raise InputError(f"{spec}: not a readable mesh scene ({type(e).__name__}: {e})") from None
    if scene.n_triangles == 0:
        raise InputError(f"{spec}: scene: no triangles found (not a mesh file, or an empty one)")
    return scene


def _check_grid_args(n, res, supersample, lo, hi) -> None:
    """--n, --res, --supersample, --lo/--hi of capture (and the demo's --n/--res)."""
    if any(int(v) < 1 for v in n):
        raise InputError(f"--n {' '.join(map(str, n))}: every count must be at least 1")
    _at_least(res, "--res")
    _at_least(supersample, "--supersample")
    _finite(lo, "--lo")
    _finite(hi, "--hi")
    if lo is not None and hi is not None:
        for axis, k, a, b in zip("xyz", n, lo, hi):
            if int(k) > 1 and float(a) == float(b):
                raise InputError(f"--lo/--hi: {axis} is {a} at both ends but --n puts {k} probes along it "
                                 f"(they would coincide)")


def cmd_capture(args) -> int:
    from probewarp.capture.capturer import capture_grid, capture_grid_to_store
    out_name = str(args.output).lower()
    if not out_name.endswith((".zarr", ".npz")):
        raise InputError(f"{args.output}: output must end in .zarr (streamed) or .npz (in memory)")
    stream = out_name.endswith(".zarr")
    dtype = np.dtype(args.dtype or ("float16" if stream else "float32"))
    _check_grid_args(args.n, args.res, args.supersample, args.lo, args.hi)
    _probeset_output(args.output)
    scene = _load_scene(args.scene, args.seed)
    lo, hi = args.lo, args.hi
    if lo is None or hi is None:
        if not args.scene.startswith("builtin"):
            raise InputError("--lo and --hi are required for a scene file (only 'builtin' has default bounds)")
        blo, bhi = scene.builtin_grid()
        lo = lo if lo is not None else blo
        hi = hi if hi is not None else bhi
        _check_grid_args(args.n, args.res, args.supersample, lo, hi)
    n = args.n
    total = int(n[0]) * int(n[1]) * int(n[2])
    t0 = time.perf_counter()
    with _progress("capture", total) as bar:
        if stream:   # rendered and written pass by pass: memory bounded by one pass
            capture_grid_to_store(scene, lo, hi, n, args.res, args.output, supersample=args.supersample,
                                  dtype=dtype, progress=_bar_update(bar))
        else:
            probes = capture_grid(scene, lo, hi, n, args.res, supersample=args.supersample,
                                  progress=_bar_update(bar))
    if not stream:
        probes.save(args.output, dtype=dtype)
    dt = time.perf_counter() - t0
    print(f"captured {total} probes at R={args.res} ({dtype}) in {dt:.1f} s "
          f"({total / max(dt, 1e-9):.0f} probes/s) -> {args.output}")
    return errors.EXIT_OK


def cmd_import(args) -> int:
    from probewarp.baker.importer import import_folder
    _at_least(args.res, "--res")
    for what, path, is_dir in (("image folder", Path(args.folder), True), ("positions CSV", Path(args.csv), False)):
        if not path.exists():
            raise InputError(f"{path}: {what} not found")
        if path.is_dir() != is_dir:
            raise InputError(f"{path}: {what}: is {'not ' if is_dir else ''}a folder")
    _probeset_output(args.output)
    # import_folder validates (errors name the CSV line); with --sanitize it
    # leaves that to the repair pass instead.
    with _progress("import probes") as bar:
        probes = import_folder(args.folder, args.csv, args.res, layout=args.layout,
                               validate=not args.sanitize, progress=_bar_update(bar))
    report = probes.validate(name=str(args.csv), sanitize=True) if args.sanitize else None
    probes.save(args.output)
    if report is not None:
        print(report.summary())
    print(f"imported {probes.n_probes} probes at R={probes.resolution} -> {args.output}")
    return errors.EXIT_OK


def cmd_export(args) -> int:
    from probewarp.baker.importer import export_exr_folder
    probes = _load_probeset(args.input)
    _folder_output(args.output)
    with _progress("export probes", probes.n_probes) as bar:
        export_exr_folder(probes, args.output, layout=args.layout, progress=_bar_update(bar))
    print(f"wrote {probes.n_probes} EXR files ({args.layout}) and positions.csv -> {args.output}")
    return errors.EXIT_OK


def cmd_bake(args) -> int:
    from probewarp.baker import pipeline
    out = pipeline.archive_path(args.output)
    explicit = _prototypes(args, config.DEFAULT_PROTOTYPES)
    _check_codec(args, None, None, args.input)
    _at_least(args.threads, "--threads")
    _at_least(args.workers, "--workers")
    if not (np.isfinite(args.halo) and args.halo >= 0):
        raise InputError(f"--halo {args.halo}: must be a finite number >= 0")
    probes = _load_probeset(args.input, validate=not args.sanitize, lazy=None if args.sanitize else True)
    _check_codec(args, probes.n_probes if explicit else None, probes.resolution, args.input)
    _check_writable(out)
    probes, srep = pipeline.load_probes(probes, sanitize=args.sanitize, validate=False)
    if srep is not None:
        print(srep.summary())
    _bake(lambda progress: pipeline.bake_probeset(
        probes, out, n_prototypes=args.prototypes, n_taps=args.taps, prototype_res=args.prototype_res,
        page_probes=args.page_probes, seed=args.seed, n_iter=args.iterations, domain=args.domain,
        warp=not args.no_warp, texel_format=args.format, coherence=args.coherence, halo=args.halo,
        workers=args.workers,
        scheduler=args.scheduler, threads=args.threads, fresh=args.fresh, validate=False,
        score=not args.no_score, report=not args.no_score, progress=progress), probes.n_probes)
    return errors.EXIT_OK


def _bake(run, n_probes: int):
    """``run(progress)`` (a :func:`probewarp.baker.pipeline.bake_probeset` call)
    with a progress bar over probes (pages finish whole); print the summary."""
    from probewarp.baker.engines import peak_rss_bytes
    with _progress("bake", n_probes, unit="probe") as bar:
        def progress(page, n_pages, stage, info):
            if stage in ("page", "resumed"):
                bar.update(info["probes_done"] - bar.n)
                rate = info.get("probes_per_second")
                resumed = f", {info['resumed']} resumed" if info.get("resumed") else ""
                bar.set_postfix_str(f"page {info['pages_done']}/{n_pages}{resumed}"
                                    + (f", {rate:.0f} probes/s" if rate else "")
                                    + f", peak {peak_rss_bytes() / 2 ** 30:.2f} GiB")
            else:
                bar.set_postfix_str(f"{stage} the archive" if stage == "write" else "scoring the written archive")
        r = run(progress)
    paths = r.report_paths
    t = r.throughput
    print(f"baked {r.n_probes} probes into {r.n_pages} page(s) in {r.seconds['bake']:.1f} s -> {r.archive}")
    print(f"  {t['probes_per_second']:.0f} probes/s ({t['engine']}, {t['pages_fitted']} pages fitted, "
          f"{t['pages_resumed']} resumed), peak memory {t['peak_rss_bytes'] / 2 ** 30:.2f} GiB")
    if np.isfinite(r.psnr_db):
        print(f"  PSNR {r.psnr_db:.2f} dB   log-RMSE {r.log_rmse:.4f}   {r.bytes_per_probe:.1f} bytes/probe "
              f"({r.file_bytes} bytes)")
    else:
        print(f"  {r.bytes_per_probe:.1f} bytes/probe ({r.file_bytes} bytes); not scored (--no-score)")
    if r.border.get("gap_db") is not None:
        b = r.border
        print(f"  page borders: band {b['band_psnr_db']:.2f} dB, interior {b['interior_psnr_db']:.2f} dB "
              f"(gap {b['gap_db']:+.2f} dB)")
    lat = getattr(r, "lattice_detected", None)
    if lat and lat["as_grid"]:
        kind = "dense" if lat["dense"] else f"{lat['holes']} points without a probe"
        print(f"  lattice detected (no grid in the input): {' x '.join(map(str, lat['shape']))}, {kind}"
              + (", probes put in grid order" if lat["reordered"] else "") + ": baked and decoded as a grid")
    elif lat:
        print(f"  on a lattice of {' x '.join(map(str, lat['shape']))} with {lat['holes']} points without a probe: "
              "baked as a scattered set (below half full, the tetrahedral rule decodes better between probes "
              "than a sparse grid's; docs/FORMAT.md)")
    if paths:
        print(f"  report {paths['json']}, plots " + ", ".join(str(v) for k, v in paths.items() if k != "json"))
    return r


def cmd_decode(args) -> int:
    from probewarp.baker.decoder import Decoder
    _at_least(args.res, "--res")
    _archive_input(args.archive)
    try:
        pos = np.load(args.at, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{args.at}: cannot read positions ({getattr(e, 'strerror', None) or e})") from e
    if not isinstance(pos, np.ndarray):
        raise InputError(f"{args.at}: field positions: expected a .npy array, got an .npz archive")
    pos = np.asarray(pos)
    if pos.ndim != 2 or pos.shape[1] != 3 or not np.issubdtype(pos.dtype, np.number):
        raise InputError(f"{args.at}: field positions: expected a (Q, 3) numeric array, got {pos.shape} {pos.dtype}")
    if len(pos) == 0:
        raise InputError(f"{args.at}: field positions: no positions to decode")
    bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if bad.size:
        raise InputError(f"{args.at}: position {int(bad[0])}: field positions: not finite ({pos[bad[0]]})")
    _probeset_output(args.output)
    if args.backend == "gl":
        from probewarp.runtime.decode import decode_gl
        faces = decode_gl(args.archive, pos, args.res)
    else:
        dec = Decoder(args.archive)
        faces = np.concatenate([dec.decode(pos[a:a + 4096], args.res) for a in range(0, len(pos), 4096)])
    from probewarp.baker.probeset import ProbeSet
    ProbeSet(positions=pos.astype(np.float32), faces=faces).save(args.output)
    print(f"decoded {len(pos)} positions at R={faces.shape[2]} ({args.backend}) -> {args.output}")
    return errors.EXIT_OK


def cmd_compare(args) -> int:
    from probewarp.baker.pipeline import load_probes
    from probewarp.baselines.compare import compare_probeset
    explicit = _prototypes(args, config.DEFAULT_PROTOTYPES)
    _check_codec(args, None, None, args.input)
    probes = _load_probeset(args.input, lazy=True)
    _check_codec(args, probes.n_probes if explicit else None, probes.resolution, args.input)
    _folder_output(args.out)
    probes, _ = load_probes(probes, validate=False)
    with _files_into(Path(args.out)) as tmp:
        _compare("compare", lambda progress: compare_probeset(
            probes, tmp, progress=progress, prototype_res=args.prototype_res,
            n_prototypes=args.prototypes, n_taps=args.taps, n_iter=args.iterations, seed=args.seed,
            heldout=not args.no_heldout, super_resolution=not args.no_super_resolution))
    print(f"\nwrote {Path(args.out) / 'compare.json'} and {Path(args.out) / 'compare.png'}")
    return errors.EXIT_OK


@__import__("contextlib").contextmanager
def _files_into(folder: Path):
    """A temporary folder beside ``folder`` to write into; on success its files move into
    ``folder`` (made if missing), on any failure it is removed: no partial output."""
    import os
    import shutil
    from probewarp.format.atomic import temp_beside
    _remember_made([folder, *folder.absolute().parents])
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(folder)
    try:
        tmp.mkdir()
        yield tmp
        folder.mkdir(exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, folder / f.name)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _compare(label: str, run) -> dict:
    """``run(progress)`` (a :func:`probewarp.baselines.compare.compare_probeset`
    call, which writes OUT/compare.json and compare.png) with a progress bar;
    print the table."""
    from probewarp.baselines.compare import format_table
    with _progress(label, None, unit="method") as bar:
        def progress(name):
            bar.set_postfix_str(name)
            bar.update(1)
        result = run(progress)
    print(format_table(result))
    return result


def _is_archive(path: Path) -> bool:
    return path.suffix == ".pwa"


def _existing(arg) -> Path:
    path = Path(arg)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    return path


def _archive_input(arg) -> Path:
    """An archive argument: an existing, readable file (ArchiveReader checks the rest)."""
    path = _existing(arg)
    if not path.is_file():
        raise InputError(f"{path}: is not a file (an archive is one)")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as e:
        raise InputError(f"{path}: cannot read the archive ({e.strerror})") from None
    return path


def _with_archive(path: Path, method: str):
    """Open the archive at ``path`` and call one of its ArchiveReader methods."""
    from probewarp.format.archive import ArchiveReader
    with ArchiveReader(_archive_input(path)) as ar:
        return getattr(ar, method)()


def cmd_info(args) -> int:
    path = _existing(args.input)
    if _is_archive(path):
        summary = _with_archive(path, "summary")
    else:
        summary = _load_probeset(path).summary()
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"{path}:")
        print(_fmt_summary(summary))
    return errors.EXIT_OK


def cmd_validate(args) -> int:
    path = _existing(args.input)
    if _is_archive(path):
        _with_archive(path, "validate")
        print(f"{path}: ok")
        return errors.EXIT_OK
    if args.sanitize and args.output is None:
        raise InputError("--sanitize needs -o OUT: the input is never modified in place")
    if args.output is not None and not args.sanitize:
        raise InputError("-o OUT: only with --sanitize (a plain validate writes nothing)")
    probes = _load_probeset(path, validate=False)
    if args.sanitize:
        _probeset_output(args.output)
        report = probes.validate(name=str(path), sanitize=True)
        probes.save(args.output)
        print(report.summary())
        print(f"repaired copy -> {args.output}")
    else:
        probes.validate(name=str(path))
        print(f"{path}: ok ({probes.n_probes} probes, R={probes.resolution})")
    return errors.EXIT_OK


def _display_available() -> bool:
    import os
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_demo(args) -> int:
    """Without ARCHIVE: capture the built-in scene, bake, compare, then fly through
    it; with ARCHIVE: fly through that archive (:mod:`probewarp.demo`).

    Each step writes its files atomically; a step that fails leaves the earlier steps'
    (complete) files, and an output folder this run made that is still empty is removed."""
    if args.archive is None:
        out = Path(args.out)
        _remember_made([out, *out.absolute().parents])
    return _demo(args)


def _demo(args) -> int:
    import os
    from probewarp.demo import job
    from probewarp.demo.camera import default_path, load_path
    out = Path(args.out)
    window = args.window or (not args.headless and _display_available() and args.screenshot is None
                             and not args.no_fly and _has_glfw())
    if args.window and not _display_available():
        raise InputError("--window: no display here (DISPLAY / WAYLAND_DISPLAY unset); use --headless")
    if args.window and not _has_glfw():
        raise InputError("--window needs glfw: pip install 'probewarp[window]'")
    _at_least(args.frames, "--frames")
    _at_least(args.page_slots, "--page-slots")
    if any(int(v) < 1 for v in args.size):
        raise InputError(f"--size {args.size[0]} {args.size[1]}: both must be at least 1")
    if args.archive is None:
        _check_grid_args(args.n, args.res, 1, None, None)
        explicit = _prototypes(args, job.PROTOTYPES)
        _check_codec(args, int(np.prod([int(v) for v in args.n])) if explicit else None, int(args.res),
                     "the built-in job")
        _folder_output(out)
    else:
        _archive_input(args.archive)
    if not window and not args.no_fly:
        _folder_output(args.fly_out or (out / job.FLY_NAME if args.archive is None
                                        else Path(args.archive).with_suffix(".flythrough")))
    path = load_path(args.path) if args.path else None          # bad path files fail before any work
    if window:
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if args.archive is None:
        n = args.n
        total = int(n[0]) * int(n[1]) * int(n[2])
        t0 = time.perf_counter()
        with _progress("1/4 capture the built-in scene", total) as bar:
            probes = job.capture_step(out, n=n, res=args.res, seed=args.seed, progress=_bar_update(bar))
        print(f"built-in scene: {probes.n_probes} probes at R={probes.resolution} captured in "
              f"{time.perf_counter() - t0:.1f} s -> {out / job.PROBES_NAME}")
        kw = dict(n_prototypes=args.prototypes, page_probes=args.page_probes, n_taps=args.taps,
                  n_iter=args.iterations, seed=args.seed)
        print("2/4 bake")
        _bake(lambda progress: job.bake_step(probes, out, progress=progress, **kw), probes.n_probes)
        if not args.no_compare:
            _compare("3/4 compare", lambda progress: job.compare_step(probes, out, progress=progress, **kw))
        archive = out / job.ARCHIVE_NAME
        from probewarp.capture.scene import Scene
        scene = Scene.builtin(seed=args.seed)
    else:
        archive = Path(args.archive)
        probes = None
        if args.probes:
            probes = _load_probeset(args.probes)
        scene = _load_scene(args.scene, args.seed) if args.scene else None
    if args.view != "decoded" and scene is None:
        raise InputError(f"--view {args.view}: needs the ground truth, a scene to capture it from (--scene)")
    if args.no_fly:
        print(f"\nwrote {out}/")
        return errors.EXIT_OK
    if path is None:
        from probewarp.format.archive import ArchiveReader
        with ArchiveReader(archive) as ar:
            grid = ar.grid
        if grid is None:
            raise InputError(f"{archive}: field grid: the flythrough streams grid archives; this one is scattered")
        path = default_path(grid.lo, grid.hi, args.frames or 72)
    elif args.frames:
        from probewarp.demo.camera import CameraPath
        path = CameraPath(path.positions[:args.frames], path.targets[:args.frames], path.fov_y)
    step = "4/4 fly" if args.archive is None else "fly"
    if window:
        from probewarp.demo.window import run_window
        print(f"{step}: window (WASD + mouse drag, 1-4 views, B baselines, V environment, Esc quits)")
        r = run_window(archive, scene=scene, probes=probes, path=path, size=args.size,
                       page_slots=args.page_slots, frames=args.frames, screenshot=args.screenshot,
                       overlay=not args.no_overlay, view=args.view)
        print(f"{r['frames']} frames, median {r['frame_ms_median'] or 0:.1f} ms")
        return errors.EXIT_OK
    from probewarp.demo.headless import run_headless
    if args.fly_out:
        fly = Path(args.fly_out)
    else:
        fly = out / job.FLY_NAME if args.archive is None else archive.with_suffix(".flythrough")
    with _progress(f"{step}: headless, {len(path)} frames", len(path), unit="frame") as bar:
        summary = run_headless(archive, fly, path=path, scene=scene, probes=probes, size=args.size,
                               view=args.view, page_slots=args.page_slots, wait=not args.no_wait,
                               video=not args.no_video, progress=_bar_update(bar))
    print(_fly_summary(summary))
    print(f"\nwrote {fly}/: frames/, contact_sheet.png, summary.json"
          + (", flythrough.mp4" if summary["mp4"] else "" if args.no_video
             else " (no MP4: pip install imageio-ffmpeg)"))
    return errors.EXIT_OK


def _has_glfw() -> bool:
    from importlib.util import find_spec
    return find_spec("glfw") is not None


def _fly_summary(s: dict) -> str:
    lines = [f"frames {s['frames']} at {s['size'][0]}x{s['size'][1]}: median {s['frame_ms']['median']:.1f} ms, "
             f"p99 {s['frame_ms']['p99']:.1f} ms per decoded frame"]
    st = s["streaming"]
    lines.append(f"pages: {st['uploaded']} uploaded, {st['evicted']} evicted, {st['frames_missing']} frames with "
                 f"pages missing, {st['failed']} failed; {st['page_slots']} slots = "
                 f"{st['budget_bytes'] / 2 ** 20:.2f} MiB GPU")
    if s["psnr_probe_db"]:
        lines.append(f"{'lighting':<16}{'PSNR probes':>12}{'PSNR objects':>14}{'popping mean':>14}{'p95':>8}")
        for k in s["psnr_probe_db"]:
            pop = s["popping"].get(k, {})
            lines.append(f"{k:<16}{s['psnr_probe_db'][k]:>10.2f}dB{s['psnr_objects_db'][k]:>12.2f}dB"
                         f"{(pop.get('mean') or 0):>14.4f}{(pop.get('p95') or 0):>8.4f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="probewarp",
        description="Compress grids of 360-degree HDR light probes into warped, blended prototype cubemaps.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, func, help_, description=None):
        sp = sub.add_parser(name, help=help_, description=description or help_, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(func=func)
        return sp

    sp = add("capture", cmd_capture, "render HDR probe cubemaps on a regular grid from a mesh scene",
             "Render HDR probe cubemaps on a regular grid from a mesh scene (OBJ or glTF, or 'builtin',\n"
             "a procedural scene with near, mid and far geometry), headless on EGL. Sky with a sun,\n"
             "sun shadows and sky ambient; supersampled and box-filtered down to --res.\n\n"
             "Output: a .zarr store is streamed (each pass of probes is written as it is rendered;\n"
             "memory stays bounded by one pass, whatever the grid size): the one for large grids,\n"
             "e.g. a million probes. A .npz file is built in memory (all faces at once) and suits\n"
             "small grids. Either appears only when complete (nothing is left on an error).")
    sp.add_argument("scene", metavar="SCENE", help="OBJ/glTF/GLB file, or 'builtin'")
    sp.add_argument("--lo", nargs=3, type=float, metavar=("X", "Y", "Z"),
                    help="first probe centre of the grid (default for 'builtin': its walkable area)")
    sp.add_argument("--hi", nargs=3, type=float, metavar=("X", "Y", "Z"), help="last probe centre of the grid")
    sp.add_argument("--n", nargs=3, type=int, metavar=("NX", "NY", "NZ"), required=True,
                    help="probes along x, y, z")
    sp.add_argument("--res", type=int, default=16, metavar="R", help="cubemap face resolution (default 16)")
    sp.add_argument("--supersample", type=int, default=4, metavar="S",
                    help="render at R*S and box-filter down (default 4)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the built-in scene (default 0)")
    sp.add_argument("--dtype", choices=["float16", "float32"], default=None,
                    help="storage dtype of the faces (default float16 for .zarr, float32 for .npz); "
                         "float16 rejects radiance above 65504")
    sp.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="probe set to write: .zarr (streamed, bounded memory: use it for large grids) "
                         "or .npz (in memory)")

    sp = add("bake", cmd_bake, "learn prototypes and sparse codes; write an archive",
             "Learn M warped prototype cubemaps per page and N (index, weight) codes per probe, and\n"
             "write a versioned archive (.pwa). Beside it: OUT.report.json (PSNR, log-RMSE, bytes per\n"
             "probe, probes/s, time per phase, peak memory, error against the distance to a page\n"
             "border, loss per iteration) and plots OUT.loss.png, OUT.error.png, OUT.border.png.\n"
             "The published numbers come from decoding the archive as written.\n\n"
             "Large sets: a .zarr (or uncompressed .npz) input is read page by page, so memory is\n"
             "bounded by the page size times the pages in flight. Finished pages are kept in\n"
             "OUT.partial/; after a crash or kill the same command resumes from them. The archive\n"
             "appears (atomically) only when every page is done.")
    sp.add_argument("input", metavar="IN", help="probe set (.npz or .zarr)")
    sp.add_argument("-o", "--output", required=True, metavar="OUT", help="archive to write (.pwa)")
    sp.add_argument("--prototypes", type=int, default=None, metavar="M",
                    help=f"prototypes per page (default {config.DEFAULT_PROTOTYPES}: about 200 bytes a probe at "
                    f"R = 16 with the default pages; capped by the probes of a smaller page; an explicit M "
                    f"above the set's probe count is refused)")
    sp.add_argument("--taps", type=int, default=config.DEFAULT_TAPS, metavar="N",
                    help=f"prototypes blended per probe (default {config.DEFAULT_TAPS})")
    sp.add_argument("--prototype-res", type=int, default=None, metavar="RP",
                    help="prototype face resolution (default R; a multiple of R if larger)")
    sp.add_argument("--page-probes", type=int, default=config.DEFAULT_PAGE_PROBES, metavar="K",
                    help=f"about K probes per page (spatial brick); one page if K >= P "
                    f"(default {config.DEFAULT_PAGE_PROBES})")
    sp.add_argument("--iterations", type=int, default=config.DEFAULT_MAX_ITERATIONS,
                    help=f"outer iterations at most; a page stops earlier when its held-out probes stop "
                    f"improving (default {config.DEFAULT_MAX_ITERATIONS})")
    sp.add_argument("--domain", choices=["tonemap", "linear"], default="tonemap",
                    help="blend domain (default tonemap: the metric's; the decoder inverts it)")
    sp.add_argument("--format", choices=["rgba16f", "rgb9e5", "rgba8", "bc7", "bc6h", "rgba32f"],
                    default=None,
                    help=f"stored prototype texel format (default {DEFAULT_TEXEL_FORMAT}, the measured "
                         f"rate-distortion choice, or {FALLBACK_TEXEL_FORMAT} where the prototype "
                         f"resolution is not a multiple of 4; rgba8 and bc7 need --domain "
                         "tonemap; bc6h, 1 byte per texel like bc7, stores HDR in either domain; bc7 "
                         "and bc6h need a prototype resolution divisible by 4)")
    sp.add_argument("--no-warp", action="store_true", help="no parallax (infinite radii): the plain dictionary")
    sp.add_argument("--coherence", type=float, default=None, metavar="C",
                    help="price of one more distinct prototype in a grid cell, relative to the mean probe loss: "
                    "neighbours share prototypes, so decoding between probes reads fewer (default 0.3; 0: "
                    "the best PSNR, about 1.5x the distinct prototypes)")
    sp.add_argument("--seed", type=int, default=0,
                    help="random seed; the archive is byte-identical for a seed, whichever way it ran")
    sp.add_argument("--sanitize", action="store_true", help="repair the input instead of rejecting it (reported)")
    sp.add_argument("--halo", type=float, default=DEFAULT_HALO, metavar="H",
                    help=f"fit each page with its neighbours' probes within H probe spacings, so border "
                         f"probes have the context of inner ones (default {DEFAULT_HALO:g}; 0: none)")
    run = sp.add_argument_group("where pages run (default: in this process, all cores)")
    run.add_argument("--threads", type=int, default=None, metavar="T",
                     help="pages at once in this process (default: the cores available)")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="run pages on a local Dask cluster of N processes (needs probewarp[dask])")
    run.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="run pages on an existing Dask cluster, e.g. tcp://host:8786; every worker needs "
                          "probewarp installed and, for a .zarr or .npz input, the same path to it")
    run.add_argument("--fresh", action="store_true",
                     help="discard the finished pages an interrupted bake left in OUT.partial/ "
                          "(by default the same command resumes from them)")
    run.add_argument("--no-score", action="store_true",
                     help="skip decoding the written archive to score it (and the report)")

    sp = add("decode", cmd_decode, "decode an archive at arbitrary positions",
             "Decode at any positions: on probes, between them (trilinear blend of the 8 surrounding\n"
             "probes' codes on a grid, every prototype warped to the position itself) and outside the\n"
             "grid (the nearest boundary probes' codes, still warped to the true position).")
    sp.add_argument("archive", metavar="ARCHIVE")
    sp.add_argument("--at", required=True, metavar="POSITIONS.npy", help="(Q, 3) float array of positions")
    sp.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="probe set with positions and faces")
    sp.add_argument("--res", type=int, default=None, metavar="R", help="output resolution (default: the baked R)")
    sp.add_argument("--backend", choices=["cpu", "gl"], default="cpu", help="decoder (default cpu, the reference)")

    sp = add("compare", cmd_compare, "probewarp against SH, PCA, VQ and its own ablations, side by side",
             "One run, same probes, same metric (DESIGN-NOTES §5-§6): probewarp, its ablations (no warp,\n"
             "one fixed radius, Rp = R), a compact operating point, spherical harmonics (orders 2, 4, 6),\n"
             "PCA, k-means VQ; and the held-out test (bake on half a checkerboard of the grid, decode at\n"
             "the other half, against blending the uncompressed neighbours). Prints a table; writes\n"
             "OUT/compare.json and the rate-distortion plot OUT/compare.png.")
    sp.add_argument("input", metavar="IN", help="probe set (.npz or .zarr)")
    sp.add_argument("--prototypes", type=int, default=None, metavar="M",
                    help=f"prototypes (default {config.DEFAULT_PROTOTYPES}, capped by the probes; an explicit "
                    f"M above the set's probe count is refused)")
    sp.add_argument("--taps", type=int, default=4, metavar="N", help="prototypes per probe (default 4)")
    sp.add_argument("--prototype-res", type=int, default=None, metavar="RP", help="prototype resolution")
    sp.add_argument("--iterations", type=int, default=config.DEFAULT_MAX_ITERATIONS,
                    help=f"outer iterations of every bake, at most (default {config.DEFAULT_MAX_ITERATIONS})")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-heldout", action="store_true", help="skip the held-out test")
    sp.add_argument("--no-super-resolution", action="store_true",
                    help="skip the Rp = 2R ablation (the slowest row)")
    sp.add_argument("--out", default="out/compare", help="output folder (default out/compare)")

    sp = add("import", cmd_import, "import a folder of 360-degree HDR images plus a CSV of positions",
             "Import a folder of 360-degree images (equirectangular or horizontal cube-cross; .exr or .hdr)\n"
             "listed in a CSV of name,x,y,z, resampled with area filtering to cubemaps of --res.")
    sp.add_argument("folder", metavar="FOLDER")
    sp.add_argument("--csv", required=True, metavar="CSV", help="name,x,y,z per probe (header optional)")
    sp.add_argument("--res", type=int, default=16, metavar="R", help="cubemap face resolution (default 16)")
    sp.add_argument("--layout", choices=["auto", "equirect", "cross"], default="auto",
                    help="image layout (default: detected from the aspect ratio)")
    sp.add_argument("--sanitize", action="store_true",
                    help="repair NaN/Inf, negative radiance and duplicate positions, and report what was done")
    sp.add_argument("-o", "--output", required=True, metavar="OUT", help="probe set to write (.npz or .zarr)")

    sp = add("export", cmd_export, "export a probe set to a folder of EXR files for inspection")
    sp.add_argument("input", metavar="IN", help="probe set (.npz or .zarr)")
    sp.add_argument("--layout", choices=["cross", "equirect"], default="cross", help="image layout (default cross)")
    sp.add_argument("-o", "--output", required=True, metavar="FOLDER")

    sp = add("info", cmd_info, "summarise a probe set or an archive")
    sp.add_argument("input", metavar="PATH", help="probe set (.npz/.zarr) or archive (.pwa)")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sp = add("validate", cmd_validate, "check a probe set or an archive fully (exit 0 ok, 3 bad)",
             "Check every probe of a probe set (shapes, dtypes, NaN/Inf, negative radiance, duplicate\n"
             "positions, grid description) or every page of an archive (checksums, bounds).\n"
             "With --sanitize -o OUT, write a repaired copy of a probe set and report the repairs.")
    sp.add_argument("input", metavar="PATH")
    sp.add_argument("--sanitize", action="store_true", help="repair a probe set instead of rejecting it")
    sp.add_argument("-o", "--output", metavar="OUT", help="where --sanitize writes the repaired copy")

    sp = add("demo", cmd_demo, "the built-in job end to end, or a flythrough of an archive",
             "Without ARCHIVE: capture the built-in procedural scene, bake it, compare it with SH, PCA\n"
             "and its ablations, then fly through it. With ARCHIVE: fly through that archive.\n\n"
             "The flythrough draws the scene's geometry (with --scene, or the built-in one) and three\n"
             "spheres riding in front of the camera, lit only by the field decoded at their centres:\n"
             "a mirror, a rough and a diffuse one. With a display it opens a window (WASD + mouse drag to\n"
             "fly; 1 decoded, 2 ground truth, 3 error, 4 split; B baselines; V environment; O overlay;\n"
             "P play the path; Esc quits). Without one, or with --headless, it renders a camera path\n"
             "into OUT/flythrough/: frames/NNNN.png, contact_sheet.png (decoded | ground truth | error |\n"
             "nearest probe | SH order 2), flythrough.mp4 (with imageio-ffmpeg) and summary.json (PSNR\n"
             "against ground truth along the path, frame times, streaming counts, popping).\n\n"
             "Camera path files: {\"frames\": F, \"fov_y\": 60, \"keys\": [{\"position\": [x,y,z],\n"
             "\"target\": [x,y,z]}, ...]}, a spline through the keys. Default: a pass through the grid\n"
             "that crosses page borders and leaves the grid once, through its top.")
    sp.add_argument("archive", nargs="?", metavar="ARCHIVE", help="a grid archive (.pwa) to fly through "
                    "(default: run the built-in job)")
    sp.add_argument("--out", default="out/demo", help="output folder of the built-in job (default out/demo)")
    sp.add_argument("--fly-out", metavar="DIR", help="headless output folder (default OUT/flythrough, or "
                    "ARCHIVE's name with .flythrough)")
    sp.add_argument("--scene", metavar="SCENE", help="with ARCHIVE: geometry and ground truth (builtin, "
                    "builtin:SEED, or an OBJ/glTF file; without it neither is drawn)")
    sp.add_argument("--probes", metavar="PROBES", help="with ARCHIVE: the uncompressed probe set, for the "
                    "nearest-probe and SH baselines")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--headless", action="store_true", help="render the path to files even with a display")
    g.add_argument("--window", action="store_true", help="open the window (fails without a display)")
    g.add_argument("--no-fly", action="store_true", help="stop after the bake and comparison")
    sp.add_argument("--path", metavar="PATH.json", help="camera path (default: through the grid)")
    sp.add_argument("--frames", type=int, metavar="F", help="frames of the default path (default 72); with "
                    "--path its first F; in the window: play them once, then close")
    sp.add_argument("--size", nargs=2, type=int, default=(640, 360), metavar=("W", "H"),
                    help="frame size (default 640 360)")
    sp.add_argument("--view", choices=["decoded", "truth", "error", "split"], default="decoded",
                    help="what the frames show (default decoded; the others need the ground truth)")
    sp.add_argument("--page-slots", type=int, default=8, metavar="K",
                    help="pages resident on the GPU at once (default 8, the least that always works)")
    sp.add_argument("--no-wait", action="store_true", help="headless: do not wait for pages (what a "
                    "real-time frame sees: missing pages fall back)")
    sp.add_argument("--no-video", action="store_true", help="headless: no MP4")
    sp.add_argument("--screenshot", metavar="PNG", help="window: save the last frame of --frames here")
    sp.add_argument("--no-overlay", action="store_true", help="window: no text overlay")
    sp.add_argument("--n", nargs=3, type=int, default=(16, 4, 16), metavar=("NX", "NY", "NZ"),
                    help="built-in job: probe grid (default 16 4 16)")
    sp.add_argument("--res", type=int, default=16, metavar="R", help="built-in job: probe resolution (default 16)")
    sp.add_argument("--prototypes", type=int, default=None, metavar="M",
                    help="built-in job: prototypes per page (default 16, the default rate)")
    sp.add_argument("--page-probes", type=int, default=128, metavar="K",
                    help="built-in job: probes per page (default 128: 8 pages to stream)")
    sp.add_argument("--taps", type=int, default=4, metavar="N", help="prototypes per probe (default 4)")
    sp.add_argument("--iterations", type=int, default=config.DEFAULT_MAX_ITERATIONS,
                    help=f"outer iterations at most (default {config.DEFAULT_MAX_ITERATIONS})")
    sp.add_argument("--no-compare", action="store_true", help="skip the side-by-side comparison")
    sp.add_argument("--seed", type=int, default=0)
    return p


def _target_of(name) -> str:
    """A path inside a temporary (``format.atomic``: ``.<stem>.<tag>-<12 hex><suffix>``) as
    the file or folder it was to become; other paths unchanged."""
    import re
    p = Path(str(name))
    for i, part in enumerate(p.parts):
        m = re.fullmatch(r"\.(.+)\.(?:tmp|old)-[0-9a-f]{12}(.*)", part)
        if m:
            return str(Path(*p.parts[:i], m.group(1) + m.group(2)))
    return str(p)


def _os_error_message(e: OSError) -> str:
    """``FILE: cannot write (No space left on device)``: the file the user named, not a temporary."""
    what = e.strerror or str(e) or type(e).__name__
    if e.filename is not None:
        return f"{_target_of(e.filename)}: cannot write ({what})"
    if _OUTPUTS:
        return f"{_OUTPUTS[-1]}: cannot write ({what})"
    return f"{type(e).__name__}: {e}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    _OUTPUTS.clear()
    _MADE.clear()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help is 0, usage errors are 2
        return int(e.code or 0)
    rc = errors.EXIT_RUNTIME
    try:
        rc = _main(args)
    finally:
        if rc != errors.EXIT_OK:   # a failure (or an exception on its way out) leaves no empty folder
            _remove_made_folders()
        _MADE.clear()
    return rc


def _main(args) -> int:
    try:
        return int(args.func(args))
    except InputError as e:
        _err(str(e))
        return errors.EXIT_BAD_INPUT
    except FileNotFoundError as e:
        _err(f"{e.filename}: no such file")
        return errors.EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("interrupted")
        return errors.EXIT_RUNTIME
    except ProbewarpError as e:
        _err(str(e))
        return errors.EXIT_RUNTIME
    except OSError as e:  # the disk: full, read-only, permissions (inputs were checked before any work)
        _err(_os_error_message(e))
        if "PROBEWARP_DEBUG" in __import__("os").environ:
            raise
        return errors.EXIT_RUNTIME
    except Exception as e:  # anything unexpected is a runtime failure, with its cause
        _err(f"{type(e).__name__}: {e}")
        if "PROBEWARP_DEBUG" in __import__("os").environ:
            raise
        return errors.EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
