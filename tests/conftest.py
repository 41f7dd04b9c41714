"""Shared test setup: the one place tests make GL contexts (moderngl's
``tests/conftest.py`` style), and ``tests/`` on ``sys.path`` for ``naive``.

GL fixtures
-----------
``gl_ctx`` (session): a headless EGL context from
:func:`probewarp.runtime.context.create_context` (Mesa llvmpipe here and on CI).
``gl`` (function): the same context, asserting ``GL_NO_ERROR`` before and
after the test. Tests use ``gl``; ``gl_ctx`` is for other fixtures.

Terminal fixture
----------------
``in_terminal``: runs a command with stdout and stderr on a pseudo-terminal
(100 columns) and returns ``(returncode, text drawn)``, so that what only
draws on a terminal (tqdm bars, which disable themselves on pipes) can be
asserted on.

If no EGL context can be made the GL tests skip, saying why; set
``PROBEWARP_REQUIRE_GL=1`` (CI does) to make that a failure instead.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# PyOpenGL chooses its platform at first import; runtime.context defaults it to EGL
# too, but a test module importing OpenGL first must not pick GLX.
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # import naive


@pytest.fixture(scope="session")
def gl_ctx():
    """Session-wide moderngl context (GL 4.5 core, seamless cube filtering on)."""
    from probewarp.runtime.context import create_context
    try:
        ctx = create_context(require=450)
    except Exception as exc:  # noqa: BLE001 (EGL/driver missing: anything glcontext raises)
        if os.environ.get("PROBEWARP_REQUIRE_GL") == "1":
            raise
        pytest.skip(f"no headless GL 4.5 context through EGL ({type(exc).__name__}: {exc})")
    yield ctx
    ctx.release()


@pytest.fixture
def gl(gl_ctx):
    """The session context, ``GL_NO_ERROR`` asserted before and after the test."""
    err = gl_ctx.error
    assert err == "GL_NO_ERROR", f"GL error pending before the test: {err}"
    yield gl_ctx
    err = gl_ctx.error
    assert err == "GL_NO_ERROR", f"test left a GL error behind: {err}"


@pytest.fixture
def in_terminal():
    """``run(cmd, timeout=120) -> (returncode, output)`` with a pty as stdout and stderr."""
    import fcntl
    import pty
    import struct
    import termios

    def run(cmd, timeout=120, env=None):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
                                close_fds=True)
        os.close(slave)
        chunks = []
        try:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:               # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(master)
        return proc.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace")

    return run
