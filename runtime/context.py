"""GL contexts of the runtime, and turning GL errors into exceptions.

:func:`create_context` makes a headless EGL context; :func:`context_from_current`
adopts the one a host renderer made current. Both enable seamless cube
filtering, which the cube-map arrays of :mod:`probewarp.runtime.cubearray`
and the CPU convention (:func:`probewarp.baker.cubemap.sample_cube`) assume.
:func:`check_gl_error` and :func:`_call` turn pending GL errors into
``RuntimeError`` naming the step; :func:`_gl` is the one place PyOpenGL is
imported.

Notes
-----
PyOpenGL picks its platform (EGL, GLX, ...) once, when ``OpenGL`` is first
imported. This module imports it lazily, in :func:`_gl`, after
``os.environ.setdefault("PYOPENGL_PLATFORM", "egl")``: right for the headless
contexts of :func:`create_context`. A host application that renders through a
GLX window and embeds probewarp with :func:`context_from_current` should set
``PYOPENGL_PLATFORM=glx`` itself before importing anything that imports
``OpenGL`` (with GLVND the core entry points dispatch to the current context
either way, but extension lookups go through the platform's loader).
"""
from __future__ import annotations

import os

import moderngl

from probewarp.format.errors import RuntimeFailure

#: ``GL_TEXTURE_CUBE_MAP_SEAMLESS``: filter across cube faces (GL 3.2 core).
GL_TEXTURE_CUBE_MAP_SEAMLESS = 0x884F

#: Names of GL error codes, for messages.
_GL_ERRORS = {
    0x0500: "GL_INVALID_ENUM",
    0x0501: "GL_INVALID_VALUE",
    0x0502: "GL_INVALID_OPERATION",
    0x0503: "GL_STACK_OVERFLOW",
    0x0504: "GL_STACK_UNDERFLOW",
    0x0505: "GL_OUT_OF_MEMORY",
    0x0506: "GL_INVALID_FRAMEBUFFER_OPERATION",
}


def _gl():
    """The ``OpenGL.GL`` module, imported with ``PYOPENGL_PLATFORM`` defaulting to EGL."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    from OpenGL import GL  # noqa: PLC0415 (lazy on purpose: platform choice)
    return GL

# ---------------------------------------------------------------------------
# contexts
# ---------------------------------------------------------------------------

def _prepare(ctx: moderngl.Context, require: int) -> moderngl.Context:
    if ctx.version_code < require:
        raise RuntimeError(f"GL context is {ctx.version_code}, probewarp needs {require}")
    # Seamless cube filtering is global state in GL >= 3.2 core; our CPU
    # convention (baker/cubemap.py, _cube_taps) assumes it.
    ctx.enable_direct(GL_TEXTURE_CUBE_MAP_SEAMLESS)
    check_gl_error("glEnable(GL_TEXTURE_CUBE_MAP_SEAMLESS)", ctx)
    return ctx


def create_context(require: int = 450) -> moderngl.Context:
    """A headless standalone GL context through EGL, current on return.

    Parameters
    ----------
    require : int
        Minimum GL version as moderngl spells it (450 = GL 4.5 core: compute
        shaders, ``texture(samplerCubeArray, ...)``, ``glTexStorage3D``).

    Returns
    -------
    moderngl.Context
        With ``GL_TEXTURE_CUBE_MAP_SEAMLESS`` enabled. Works on Mesa llvmpipe
        without a GPU or a display.

    Raises
    ------
    Exception
        Whatever moderngl/glcontext raise when EGL is unavailable (tests turn
        that into a skip, see ``tests/conftest.py``).
    """
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    ctx = moderngl.create_standalone_context(backend="egl", require=require)
    return _prepare(ctx, require)


def context_from_current(require: int = 450, ctx: moderngl.Context | None = None) -> moderngl.Context:
    """Use the GL context a host renderer already made current.

    Parameters
    ----------
    require : int
        Minimum GL version (see :func:`create_context`).
    ctx : moderngl.Context, optional
        The host's own moderngl context, if it has one (moderngl-window,
        ...). Without it, the context current on this thread (EGL first, then
        GLX, as moderngl's ``DefaultLoader`` looks) is wrapped with
        ``moderngl.init_context()``, which also makes it
        ``moderngl.get_context()``'s answer.

    Returns
    -------
    moderngl.Context
        Seamless cube filtering enabled (a global switch: it changes the
        host's cube sampling too, to the filtering every GL >= 3.2 renderer
        should use anyway). Releasing it does not destroy the host's context.

    Notes
    -----
    ``moderngl.create_context()`` is not used: once any moderngl context
    exists it goes through glcontext's backends, whose EGL backend cannot
    attach to a current context ("unknown mode").
    """
    if ctx is None:
        moderngl.init_context()
        ctx = moderngl.get_context()
    return _prepare(ctx, require)


#: ``glGetGraphicsResetStatus`` answers (GL 4.5 core / KHR_robustness).
_RESET_STATUS = {0x8253: "GL_GUILTY_CONTEXT_RESET", 0x8254: "GL_INNOCENT_CONTEXT_RESET",
                 0x8255: "GL_UNKNOWN_CONTEXT_RESET"}


class ContextLost(RuntimeFailure):
    """The GL context was released, or the driver reset it (a lost device):
    every GL object of it is gone. Make a new context and new runtime objects."""


def _reset_status() -> int:
    """``glGetGraphicsResetStatus()`` of the current context (0: no reset)."""
    GL = _gl()
    fn = getattr(GL, "glGetGraphicsResetStatus", None)
    if fn is None or not bool(fn):
        return 0
    try:
        return int(fn())
    except Exception:        # an entry point the driver does not provide
        return 0


def ensure_alive(ctx: moderngl.Context, where: str) -> None:
    """Raise :class:`ContextLost` naming ``where`` if ``ctx`` was released or
    the driver reports a reset; otherwise return (one GL query)."""
    if ctx is None or isinstance(getattr(ctx, "mglo", None), moderngl.InvalidObject):
        raise ContextLost(f"{where}: the GL context was released; create a new context and new "
                          "probewarp runtime objects on it")
    status = _reset_status()
    if status:
        raise ContextLost(f"{where}: the GL context was lost ({_RESET_STATUS.get(status, hex(status))}); "
                          "create a new context and new probewarp runtime objects on it")


def check_gl_error(where: str, ctx: moderngl.Context | None = None) -> None:
    """Raise ``RuntimeError`` naming ``where`` if GL has an error pending.

    Drains every pending error flag (GL may hold several), so a raised error
    does not leak into the next check. With ``ctx`` the check goes through
    moderngl (``ctx.error``), otherwise through PyOpenGL's ``glGetError``.
    """
    errors = []
    for _ in range(16):  # GL implementations hold at most a few flags
        if ctx is not None:
            e = ctx.error
            if e == "GL_NO_ERROR":
                break
        else:
            code = int(_gl().glGetError())
            if code == 0:
                break
            e = _GL_ERRORS.get(code, hex(code))
        errors.append(e)
    if errors:
        raise RuntimeError(f"{where} failed: {', '.join(errors)}")


def _call(where: str, fn, *args):
    """Call a PyOpenGL function; GL errors become ``RuntimeError`` naming ``where``."""
    from OpenGL.error import GLError  # noqa: PLC0415
    try:
        out = fn(*args)
    except GLError as exc:  # PyOpenGL's own per-call check (OpenGL.ERROR_CHECKING)
        name = _GL_ERRORS.get(int(exc.err), hex(int(exc.err))) if exc.err else str(exc)
        raise RuntimeError(f"{where} failed: {name}") from None
    check_gl_error(where)  # when PyOpenGL's checking is switched off
    return out
