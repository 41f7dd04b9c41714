"""The flythrough without a window: a camera path rendered to files, with figures.

:func:`run_headless` renders every camera of a path with
:class:`~probewarp.demo.flythrough.Flythrough` on a headless EGL context and
writes, into one folder (built beside it and renamed into place when
complete, so a killed run leaves no half-written folder)::

    frames/NNNN.png      the chosen view (decoded, truth, error or split)
    contact_sheet.png    rows along the path: decoded | ground truth | error |
                         nearest probe | SH order 2 (the same objects, the
                         same cameras; error x4 on a heat ramp)
    flythrough.mp4       the frames as a video, when imageio-ffmpeg is installed
    summary.json         the figures below, per source and per frame
    path.json            the camera path (reusable with --path)

Figures (every source against the ground truth, captured at the same
positions by the capture renderer):

- ``psnr_probe_db``: DESIGN-NOTES §5 PSNR of the lighting cubemaps at the
  three objects' centres and the camera, at the probes' resolution R,
  pooled over the path (the metric the codec is scored by, at positions
  off the lattice);
- ``psnr_objects_db``: PSNR of the tonemapped frames over the objects'
  pixels (what a viewer compares);
- ``popping``: how much the view jumps from frame to frame beyond what the
  ground truth does. For consecutive frames ``t, t+1`` and the objects'
  pixels, ``pop(t) = RMS(dT_source - dT_truth)`` with ``dT = T(I_{t+1}) -
  T(I_t)`` (tonemapped, DESIGN-NOTES §5): 0 when the source changes exactly
  as the truth does; reported as mean, p95 and max over the path. The
  objects ride with the camera, so their pixels are the same every frame
  and only their lighting changes;
- ``frame_ms``: wall time of one decoded frame (streaming update, decode at
  4 positions, prefilter, geometry, objects, present; ``ctx.finish()``),
  median and p99 (the first frame, which compiles shaders, excluded);
- ``streaming``: pages uploaded / evicted, frames with pages missing before
  the wait, largest resident count, failed pages, the GPU budget;
- ``nonfinite_pixels``: NaN or Inf pixels in any rendered frame (0).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from probewarp.baker.metrics import per_probe_mse, psnr_from_mse, tonemap
from probewarp.baker.report import write_json
from probewarp.format.atomic import atomic_dir

#: Frames of the path shown in the contact sheet.
SHEET_ROWS = 6
#: Error images: |T(a) - T(b)| times this.
ERROR_GAIN = 4.0
#: Columns of the contact sheet, in order.
SHEET_COLUMNS = ("decoded", "truth", "error", "nearest", "sh2")
COLUMN_TITLES = {"decoded": "probewarp (decoded)", "truth": "ground truth", "error": "error x4",
                 "nearest": "nearest probe", "sh2": "SH order 2, trilinear"}


class _Targets:
    """Float RGBA32F colour + depth targets and one RGBA8 for presenting."""

    def __init__(self, ctx, size, names):
        self.ctx, self.size = ctx, tuple(int(v) for v in size)
        self.tex, self.fbo, self._objs = {}, {}, []
        for n in names:
            t = ctx.texture(self.size, 4, dtype="f4")
            d = ctx.depth_renderbuffer(self.size)
            self.tex[n], self.fbo[n] = t, ctx.framebuffer([t], d)
            self._objs += [self.fbo[n], t, d]
        self.out_tex = ctx.texture(self.size, 4)
        self.out = ctx.framebuffer([self.out_tex])
        self._objs += [self.out, self.out_tex]

    def read_float(self, name) -> np.ndarray:
        w, h = self.size
        return np.frombuffer(self.fbo[name].read(components=4, dtype="f4"), np.float32).reshape(h, w, 4)

    def read_out(self) -> np.ndarray:
        """(h, w, 3) uint8, top row first (image order)."""
        w, h = self.size
        return np.frombuffer(self.out.read(components=4), np.uint8).reshape(h, w, 4)[::-1, :, :3].copy()

    def release(self):
        self.ctx.detect_framebuffer(0).use()        # never leave a released framebuffer bound
        for o in self._objs:
            o.release()


def _popping(prev, cur, prev_t, cur_t, mask):
    d = (cur - prev) - (cur_t - prev_t)
    return float(np.sqrt(np.mean(np.sum(d[mask] ** 2, axis=-1) / 3.0))) if mask.any() else 0.0


def _stats(v) -> dict:
    v = np.asarray(v, np.float64)
    if v.size == 0:
        return {"mean": None, "p95": None, "max": None}
    return {"mean": float(v.mean()), "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def _mp4(path, frames, fps):
    """Frames (list of (h, w, 3) uint8) -> H.264 MP4 with imageio-ffmpeg's
    bundled encoder; False when it is not installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return False
    h, w = frames[0].shape[:2]
    gen = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=2,   # yuv420p: even sides
                                      output_params=["-loglevel", "error"])
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()
    return True


def contact_sheet(path, rows: list[dict], columns=SHEET_COLUMNS, scale: float = 0.5) -> None:
    """rows: one dict per frame, column name -> (h, w, 3) uint8 -> one PNG with titles."""
    from PIL import Image, ImageDraw
    cols = [c for c in columns if all(c in r for r in rows)]
    h, w = rows[0][cols[0]].shape[:2]
    tw, th = max(1, int(w * scale)), max(1, int(h * scale))
    head, left = 18, 0
    sheet = Image.new("RGB", (left + tw * len(cols), head + th * len(rows)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for j, c in enumerate(cols):
        draw.text((left + j * tw + 4, 3), COLUMN_TITLES.get(c, c), fill=(235, 235, 235))
        for i, r in enumerate(rows):
            im = Image.fromarray(r[c]).resize((tw, th), Image.BILINEAR)
            sheet.paste(im, (left + j * tw, head + i * th))
            if "label" in r and j == 0:
                draw.text((left + 4, head + i * th + 3), r["label"], fill=(255, 255, 255))
    with open(path, "wb") as f:
        sheet.save(f, format="PNG")


def run_headless(archive, out, *, path, scene=None, probes=None, truth=None, size=(640, 360), view: str = "decoded",
                 page_slots: int = 8, wait: bool = True, fps: int = 24, video: bool = True,
                 ctx=None, progress=None) -> dict:
    """Render ``path`` (a :class:`~probewarp.demo.camera.CameraPath`) through the
    decoded field of ``archive`` into folder ``out`` (module docstring);
    returns the summary. ``scene``: ground truth and geometry (None: neither);
    ``probes``: the nearest-probe and SH baselines (None: none); ``truth``:
    another ground truth (:class:`~probewarp.demo.flythrough.Flythrough`).
    ``progress(done, total)`` per frame."""
    from PIL import Image
    from probewarp.demo.flythrough import Flythrough, Presenter
    from probewarp.runtime.context import create_context
    from probewarp.runtime.cubearray import CubemapArray

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    own = ctx is None
    if own:
        ctx = create_context()
    W, H = int(size[0]), int(size[1])
    F = len(path)
    sheet_at = set(np.unique(np.linspace(0, F - 1, min(SHEET_ROWS, F)).round().astype(int)).tolist())
    ft = targets = pres = probe_r = None
    try:
        ft = Flythrough(ctx, archive, scene=scene, probes=probes, truth=truth, page_slots=page_slots,
                        uploads_per_frame=None if wait else 2)
        srcs = list(ft.sources)                      # decoded first, then truth, baselines
        has_truth = "truth" in ft.sources
        if view != "decoded" and not has_truth:
            raise ValueError(f"view {view!r} needs the ground truth (a scene); only 'decoded' without one")
        targets = _Targets(ctx, (W, H), srcs)
        pres = Presenter(ctx, gain=ERROR_GAIN)
        R = ft.R
        frame_ms, per_frame, rows, video_frames = [], [], [], []
        mse = {s: [] for s in srcs if s != "truth"}
        obj_mse = {s: [] for s in srcs if s != "truth"}
        pops = {s: [] for s in srcs if s != "truth"}
        prev = None
        nonfinite = 0
        stream_tot = {"uploaded": 0, "evicted": 0, "failed": 0, "frames_missing": 0, "max_resident": 0}
        with atomic_dir(out) as tmp:
            (tmp / "frames").mkdir(parents=True)
            for i in range(F):
                cam = path.camera(i)
                t0 = time.perf_counter()
                counts = ft.stream(cam, wait=wait)
                targets.fbo["decoded"].use()
                lighting = ft.light("decoded", cam)
                ft.render(cam, (W, H), "decoded", lighting=lighting)
                ctx.finish()
                frame_ms.append((time.perf_counter() - t0) * 1e3)
                q = ft.lighting_positions(cam)
                if lighting[0].resolution == R:          # the lighting cubemaps are the decode at R
                    dec_R = lighting[0].read()[..., :3]
                else:
                    if probe_r is None:
                        probe_r = CubemapArray(ctx, R, 4, "rgba32f")
                    ft.decoder.decode_into(probe_r, q)
                    dec_R = probe_r.read()[..., :3]
                imgs = {"decoded": targets.read_float("decoded")}
                faces_R = {"decoded": dec_R}
                for s in srcs[1:]:
                    targets.fbo[s].use()
                    lighting = ft.light(s, cam)
                    ft.render(cam, (W, H), s, lighting=lighting)
                    imgs[s] = targets.read_float(s)
                    if s == "truth" and ft.sources["truth"].r == R:
                        faces_R[s] = ft.sources["truth"].last
                    else:
                        faces_R[s] = ft.sources[s].cubemaps(q, R)
                for v in imgs.values():
                    nonfinite += int((~np.isfinite(v)).any(axis=-1).sum())
                mask = imgs["decoded"][..., 3] >= 1.5
                tm = {s: tonemap(np.maximum(v[..., :3], 0)) for s, v in imgs.items()}
                rec = {"frame": i, "position": [float(v) for v in cam.position],
                       "frame_ms": frame_ms[-1], "uploaded": int(counts["uploaded"]),
                       "evicted": int(counts["evicted"]), "missing": int(counts["missing"]),
                       "resident": int(counts["resident"])}
                if has_truth:
                    for s in mse:
                        m = per_probe_mse(faces_R["truth"], faces_R[s])
                        mse[s].append(m)
                        rec[f"psnr_probe_{s}"] = psnr_from_mse(m)
                        e = tm[s][mask] - tm["truth"][mask]
                        om = float(np.mean(e ** 2)) if e.size else 0.0
                        obj_mse[s].append(om)
                        rec[f"psnr_objects_{s}"] = psnr_from_mse(om)
                        if prev is not None:
                            pm = mask & prev["mask"]
                            pops[s].append(_popping(prev[s], tm[s], prev["truth"], tm["truth"], pm))
                            rec[f"pop_{s}"] = pops[s][-1]
                prev = dict(tm, mask=mask)
                for k in ("uploaded", "evicted"):
                    stream_tot[k] += rec[k]
                stream_tot["frames_missing"] += int(rec["missing"] > 0)
                stream_tot["max_resident"] = max(stream_tot["max_resident"], rec["resident"])
                per_frame.append(rec)
                # the frame as shown, and contact-sheet cells
                targets.out.use()
                pres.render(targets.tex["decoded"], targets.tex.get("truth"), view, (W, H))
                shown = targets.read_out()
                Image.fromarray(shown).save(tmp / "frames" / f"{i:04d}.png")
                video_frames.append(shown)
                if i in sheet_at:
                    row = {"label": f"frame {i}"}
                    for s in srcs:
                        targets.out.use()
                        pres.render(targets.tex[s], None, "decoded", (W, H))
                        row[s] = targets.read_out()
                    if has_truth:
                        targets.out.use()
                        pres.render(targets.tex["decoded"], targets.tex["truth"], "error", (W, H))
                        row["error"] = targets.read_out()
                    rows.append(row)
                if progress is not None:
                    progress(i + 1, F)
            contact_sheet(tmp / "contact_sheet.png", rows)
            wrote_mp4 = bool(video) and _mp4(tmp / "flythrough.mp4", video_frames, fps)
            stream_tot["failed"] = len(ft.streamer.failed)
            for k in ("uploaded", "evicted"):          # all updates, the waits included
                stream_tot[k] = int(ft.streamer.stats[k])
            timed = frame_ms[1:] if len(frame_ms) > 1 else frame_ms
            summary = {
                "archive": str(archive), "frames": F, "size": [W, H], "view": view,
                "wait_for_pages": bool(wait), "sources": srcs,
                "psnr_probe_db": {s: psnr_from_mse(np.concatenate(v)) for s, v in mse.items() if v},
                "psnr_objects_db": {s: psnr_from_mse(v) for s, v in obj_mse.items() if v},
                "popping": {s: _stats(v) for s, v in pops.items() if has_truth},
                "frame_ms": {"median": float(np.median(timed)), "p99": float(np.percentile(timed, 99)),
                             "first": float(frame_ms[0])},
                "streaming": dict(stream_tot, page_slots=ft.streamer.page_slots, n_pages=ft.streamer.n_pages,
                                  budget_bytes=int(ft.streamer.budget_bytes)),
                "definitions": {
                    "psnr_probe_db": "DESIGN-NOTES §5 PSNR of the lighting cubemaps at the 3 objects and the "
                                     "camera, at the probes' R, pooled over frames",
                    "psnr_objects_db": "PSNR of tonemapped frames over the objects' pixels",
                    "popping": "per consecutive frames: RMS over the objects' pixels of "
                               "(T(I_t+1) - T(I_t)) - (T(G_t+1) - T(G_t)), G the ground truth",
                    "frame_ms": "wall time of one decoded frame incl. streaming update, first frame excluded"},
                "mp4": wrote_mp4,
                "nonfinite_pixels": nonfinite,
                "per_frame": per_frame,
            }
            (tmp / "path.json").write_text(json.dumps(path.to_json(), indent=1))
            write_json(tmp / "summary.json", summary)
    finally:
        for o in (probe_r, pres, targets, ft):
            if o is not None:
                o.release()
        if own:
            ctx.release()
    return summary
