"""The flythrough in a window (glfw): fly with WASD and the mouse.

Keys::

    W A S D      move (shift: faster), Q / E down / up, mouse drag (left button) to look
    1 2 3 4      view: decoded, ground truth, error (x4), split (decoded | truth)
    B            lighting of the left image: decoded, nearest probe, SH order 2
    V            geometry or the environment (the field itself) behind the objects
    P            play / pause the camera path
    O            overlay on / off
    F12          screenshot (PNG beside the archive)
    Esc          quit

The overlay shows the frame time, resident pages, GPU memory held against the
budget, the probe cell under the camera and the largest entries of its merged
code (page:prototype weight). Everything is drawn by
:class:`~probewarp.demo.flythrough.Flythrough`, exactly as headless; with
``frames`` the path is played once (waiting for pages, so the frames equal
the headless ones) and the window closes, saving the last frame to
``screenshot``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from probewarp.format.errors import RuntimeFailure

#: Metres per second of the fly camera, relative to the grid spacing.
SPEED_STEPS = 2.0
#: Radians per pixel of mouse drag.
MOUSE_GAIN = 0.004


class _Overlay:
    """Text drawn with Pillow into a texture, blended over the frame."""

    def __init__(self, ctx, size):
        from probewarp.runtime import shaders
        from probewarp.demo.flythrough import SHADER_ROOT
        self.ctx, self.size = ctx, tuple(size)
        self.tex = ctx.texture(self.size, 4)
        self.prog = shaders.program(ctx, "fullscreen.vs", "overlay.fs", root=SHADER_ROOT)
        self.vao = ctx.vertex_array(self.prog, [])
        self._text = None

    def draw(self, lines) -> None:
        from PIL import Image, ImageDraw
        text = "\n".join(lines)
        if text != self._text:
            img = Image.new("RGBA", self.size, (0, 0, 0, 0))
            d = ImageDraw.Draw(img)
            box = d.multiline_textbbox((8, 8), text)
            d.rectangle((box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4), fill=(0, 0, 0, 150))
            d.multiline_text((8, 8), text, fill=(255, 255, 255, 255))
            self.tex.write(img.transpose(Image.FLIP_TOP_BOTTOM).tobytes())
            self._text = text
        import moderngl
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self.tex.use(0)
        self.vao.render(moderngl.TRIANGLES, vertices=3)
        self.ctx.disable(moderngl.BLEND)

    def release(self):
        for o in (self.vao, self.prog, self.tex):
            o.release()


#: GL_NVX_gpu_memory_info / GL_ATI_meminfo queries (kB): what the driver says is free.
_GPU_FREE_NVX = 0x9049
_GPU_FREE_ATI = 0x87FC


def _driver_free_mib(ctx):
    """Free video memory the driver reports, MiB, or None (llvmpipe reports none)."""
    from probewarp.runtime.context import _gl
    GL = _gl()
    ext = ctx.extensions
    try:
        if "GL_NVX_gpu_memory_info" in ext:
            return int(GL.glGetIntegerv(_GPU_FREE_NVX)) / 1024
        if "GL_ATI_meminfo" in ext:
            return int(np.asarray(GL.glGetIntegerv(_GPU_FREE_ATI)).reshape(-1)[0]) / 1024
    except Exception:       # a driver that lists the extension but fails the query
        return None
    return None


def _code_lines(ft, camera, n_show):
    """The camera position's merged code, as the GPU decodes it, as text."""
    code = ft.code_at(camera.position)
    parts = [f"{p}:{k} {w:.2f}" for p, k, w in code[:n_show]]
    return f"code ({len(code)} entries, {len({(p, k) for p, k, _ in code})} prototypes): " + ", ".join(parts)


def _read_back_buffer(W, H) -> np.ndarray:
    """(H, W, 3) uint8 of the window's back buffer (bottom row first), before the swap."""
    from probewarp.runtime.context import _gl, check_gl_error
    GL = _gl()
    GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
    GL.glReadBuffer(GL.GL_BACK)
    GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
    data = GL.glReadPixels(0, 0, W, H, GL.GL_RGB, GL.GL_UNSIGNED_BYTE)
    check_gl_error("reading the window's back buffer")
    return np.frombuffer(data, np.uint8).reshape(H, W, 3)


def run_window(archive, *, scene=None, probes=None, path=None, size=(960, 540), page_slots: int = 8,
               frames: int | None = None, screenshot=None, overlay: bool = True, view: str = "decoded",
               title: str = "probewarp flythrough") -> dict:
    """Open the window and fly (module docstring). Returns counts of the run."""
    import glfw
    from probewarp.demo.camera import Camera
    from probewarp.demo.flythrough import Flythrough, Presenter
    from probewarp.runtime.context import context_from_current

    if not glfw.init():
        raise RuntimeFailure("glfw could not initialise: no display? (use --headless)")
    W, H = int(size[0]), int(size[1])
    win = None
    objs = []
    try:
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 4)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 5)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.CONTEXT_CREATION_API, glfw.EGL_CONTEXT_API)
        glfw.window_hint(glfw.RESIZABLE, False)
        win = glfw.create_window(W, H, title, None, None)
        if not win:
            raise RuntimeFailure("glfw could not open a GL 4.5 core window (use --headless)")
        glfw.make_context_current(win)
        glfw.swap_interval(0)
        ctx = context_from_current()
        screen = ctx.detect_framebuffer(0)
        fw, fh = glfw.get_framebuffer_size(win)
        W, H = int(fw), int(fh)
        wait = frames is not None
        ft = Flythrough(ctx, archive, scene=scene, probes=probes, page_slots=page_slots,
                        uploads_per_frame=None if wait else 2)
        objs.append(ft)
        pres = Presenter(ctx)
        objs.append(pres)
        tex = {n: ctx.texture((W, H), 4, dtype="f4") for n in ("a", "b")}
        fbo = {n: ctx.framebuffer([t], ctx.depth_renderbuffer((W, H))) for n, t in tex.items()}
        objs += list(fbo.values()) + list(tex.values())
        ov = _Overlay(ctx, (W, H))
        objs.append(ov)

        state = {"view": view, "left": "decoded", "env": "scene", "overlay": overlay, "play": path is not None,
                 "t": 0.0, "shot": False}
        step = float(np.min(ft.streamer.grid.step))
        if path is not None:
            cam = path.camera(0)
        else:
            g = ft.streamer.grid
            c = (g.lo + g.hi) / 2
            cam = Camera.look_at(c, c + np.array([1.0, -0.1, 0.0]))
        yaw = math.atan2(-cam.forward[0], -cam.forward[2])
        pitch = math.asin(float(np.clip(cam.forward[1], -1, 1)))
        pos = cam.position.copy()
        lefts = [s for s in ("decoded", "nearest", "sh2") if s in ft.sources]

        def on_key(_w, key, _sc, action, mods):
            if action != glfw.PRESS:
                return
            views = {glfw.KEY_1: "decoded", glfw.KEY_2: "truth", glfw.KEY_3: "error", glfw.KEY_4: "split"}
            if key in views and (views[key] == "decoded" or "truth" in ft.sources):
                state["view"] = views[key]
            elif key == glfw.KEY_B:
                state["left"] = lefts[(lefts.index(state["left"]) + 1) % len(lefts)]
            elif key == glfw.KEY_V:
                state["env"] = "environment" if state["env"] == "scene" else "scene"
            elif key == glfw.KEY_O:
                state["overlay"] = not state["overlay"]
            elif key == glfw.KEY_P and path is not None:
                state["play"] = not state["play"]
            elif key == glfw.KEY_F12:
                state["shot"] = True
            elif key == glfw.KEY_ESCAPE:
                glfw.set_window_should_close(win, True)

        glfw.set_key_callback(win, on_key)
        last_mouse = None
        frame_ms = []
        n = 0
        t_prev = time.perf_counter()
        shot_path = Path(screenshot) if screenshot else None
        while not glfw.window_should_close(win):
            glfw.poll_events()
            now = time.perf_counter()
            dt, t_prev = now - t_prev, now
            if frames is not None:
                if n >= min(frames, len(path)):
                    break
                cam = path.camera(n)
            elif state["play"] and path is not None:
                state["t"] = (state["t"] + dt * 8.0) % len(path)
                cam = path.camera(int(state["t"]))
                pos = cam.position.copy()
            else:
                if glfw.get_mouse_button(win, glfw.MOUSE_BUTTON_LEFT) == glfw.PRESS:
                    x, y = glfw.get_cursor_pos(win)
                    if last_mouse is not None:
                        yaw -= (x - last_mouse[0]) * MOUSE_GAIN
                        pitch = float(np.clip(pitch - (y - last_mouse[1]) * MOUSE_GAIN, -1.5, 1.5))
                    last_mouse = (x, y)
                else:
                    last_mouse = None
                fwd = np.array([-math.sin(yaw) * math.cos(pitch), math.sin(pitch), -math.cos(yaw) * math.cos(pitch)])
                right = np.cross(fwd, [0.0, 1.0, 0.0])
                right /= max(np.linalg.norm(right), 1e-9)
                v = SPEED_STEPS * step * dt * (4.0 if glfw.get_key(win, glfw.KEY_LEFT_SHIFT) == glfw.PRESS else 1.0)
                for key, d in ((glfw.KEY_W, fwd), (glfw.KEY_S, -fwd), (glfw.KEY_D, right), (glfw.KEY_A, -right),
                               (glfw.KEY_E, np.array([0.0, 1.0, 0.0])), (glfw.KEY_Q, np.array([0.0, -1.0, 0.0]))):
                    if glfw.get_key(win, key) == glfw.PRESS:
                        pos = pos + v * d
                cam = Camera.look_at(pos, pos + fwd, 60.0)
            t0 = time.perf_counter()
            counts = ft.stream(cam, wait=wait)
            fbo["a"].use()
            ft.render(cam, (W, H), state["left"], view=state["env"])
            need_truth = state["view"] in ("truth", "error", "split") and "truth" in ft.sources
            if need_truth:
                fbo["b"].use()
                ft.render(cam, (W, H), "truth", view=state["env"])
            screen.use()
            pres.render(tex["a"], tex["b"] if need_truth else None, state["view"] if need_truth else "decoded",
                        (W, H))
            if state["overlay"]:
                s = ft.streamer
                used = int(s.resident.sum()) * (s.budget_bytes // max(s.page_slots, 1))
                ms = float(np.median(frame_ms[-30:])) if frame_ms else 0.0
                ijk = np.floor((cam.position - s.grid.lo) / s.grid.step).astype(int)
                ov.draw([f"{ms:.1f} ms/frame   view {state['view']}   left: {state['left']}   {state['env']}",
                         f"pages resident {int(s.resident.sum())}/{s.n_pages} (slots {s.page_slots}), "
                         f"missing now {counts['missing']}, failed {len(s.failed)}",
                         f"GPU {used / 2**20:.2f} of budget {s.budget_bytes / 2**20:.2f} MiB (resident pages), "
                         + (f"driver: {free:.0f} MiB free" if (free := _driver_free_mib(ctx)) is not None
                            else "driver reports no memory figures"),
                         f"cell {tuple(int(v) for v in ijk)} at {np.round(cam.position, 2).tolist()}",
                         _code_lines(ft, cam, s.N)])
            ctx.finish()
            frame_ms.append((time.perf_counter() - t0) * 1e3)
            if state["shot"] or (shot_path is not None and frames is not None and n == min(frames, len(path)) - 1):
                from PIL import Image
                img = _read_back_buffer(W, H)
                target = shot_path or Path(archive).with_suffix(f".shot{n:04d}.png")
                Image.fromarray(img[::-1]).save(target)
                state["shot"] = False
            glfw.swap_buffers(win)
            n += 1
        return {"frames": n, "frame_ms_median": float(np.median(frame_ms)) if frame_ms else None,
                "size": [W, H]}
    finally:
        for o in reversed(objs):
            o.release()
        if win is not None:
            glfw.destroy_window(win)
        glfw.terminate()
