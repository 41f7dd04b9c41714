"""Shader loader: ``#include`` resolution, ``#define`` injection, readable errors.

Shaders are files in ``shaders/`` (package data of ``probewarp.shaders``),
named by domain and stage: ``common_*.glsl`` includes, ``*.vs/.fs/.gs/.cs``
stages (STYLE.md §4). Every stage compiles on its own with the defaults it
declares as::

    #ifndef LOCAL_SIZE
    #define LOCAL_SIZE 64
    #endif

and Python overrides them only through ``defines``, which :func:`load` writes
right after the ``#version`` line. Overriding a name that no file of the
shader declares with ``#ifndef`` is an error (a misspelt define would
otherwise do nothing, silently).

``#include "name"`` lines are replaced by the named file (resolved against the
shader folder; each file at most once per shader, so includes need no guards
and cycles are harmless). GLSL ``#line`` directives take a *number* as source
string, so each file gets an id (0 = the stage file itself) and a comment
right after ``#version`` lists them::

    // probewarp source strings: 0=sample_cubearray.cs 1=common_cubemap.glsl

:func:`program` and :func:`compute` compile through moderngl and rewrite the
compiler's ``1:12(5)`` references into ``common_cubemap.glsl:12(5)``.
"""
from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import moderngl

_VERSION_RE = re.compile(r"^\s*#\s*version\b")
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*(//.*)?$')
_LEFTOVER_INCLUDE_RE = re.compile(r"#include(?=\s)")
_IFNDEF_RE = re.compile(r"^\s*#\s*ifndef\s+([A-Za-z_]\w*)")
_IDENT_RE = re.compile(r"^[A-Za-z_]\w*$")
_TABLE_PREFIX = "// probewarp source strings:"
_TABLE_RE = re.compile(r"^// probewarp source strings:(.*)$", re.M)

class ShaderError(moderngl.Error):
    """A shader failed to load, compile or link; the message names the files.

    A subclass of ``moderngl.Error``, so code catching moderngl's errors still
    catches these.
    """


def shader_root():
    """The folder shaders are loaded from: ``importlib.resources.files('probewarp.shaders')``."""
    return importlib.resources.files("probewarp.shaders")


def _format_value(value) -> str:
    """Python value -> GLSL token: bools 1/0, floats always with a point or exponent."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if text in ("inf", "-inf", "nan"):
            raise ValueError(f"cannot write {value} as a GLSL literal")
        return text if any(c in text for c in ".eE") else text + ".0"
    text = str(value)
    if "\n" in text:
        raise ValueError(f"define values must be one line, got {text!r}")
    return text


def _read(root, name: str, parent: str | None) -> str:
    # An #include not found in ``root`` (e.g. a room's own shader folder, such as
    # probewarp.capture's) falls back to probewarp.shaders, where common_*.glsl live.
    roots = (root,) if parent is None or str(root) == str(shader_root()) else (root, shader_root())
    for r in roots:
        node = r
        for part in name.split("/"):
            node = node.joinpath(part)
        try:
            return node.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
    where = f" (included from {parent})" if parent else ""
    raise ShaderError(f"shader file {name!r} not found in {' or '.join(map(str, roots))}{where}") from None


def _expand(name: str, defines: dict, root) -> tuple[str, list[str], set[str]]:
    """The whole source of stage ``name``, its source-string table and the
    names its files declare overridable (``#ifndef NAME``)."""
    files: list[str] = []
    declared: set[str] = set()
    out: list[str] = []
    table_at = -1

    def emit(fname: str, parent: str | None) -> None:
        nonlocal table_at
        sid = len(files)
        files.append(fname)
        text = _read(root, fname, parent)
        seen_version = False
        for lineno, line in enumerate(text.splitlines(), 1):
            if _VERSION_RE.match(line):
                if parent is not None:
                    raise ShaderError(f"{fname}:{lineno}: #version in an include "
                                      f"(included from {parent})")
                seen_version = True
                out.append(line)
                table_at = len(out)
                out.append("")  # the source-string table, filled in below
                for key, value in defines.items():
                    out.append(f"#define {key} {_format_value(value)}")
                out.append(f"#line {lineno + 1} {sid}")
                continue
            m = _INCLUDE_RE.match(line)
            if m:
                child = m.group(1)
                if child in files:
                    out.append(f"// (already included: {child})")
                    continue
                if parent is None and not seen_version:
                    raise ShaderError(f"{fname}:{lineno}: #include before #version")
                out.append(f"#line 1 {len(files)}")
                emit(child, fname)
                out.append(f"#line {lineno + 1} {sid}")
                continue
            m = _IFNDEF_RE.match(line)
            if m:
                declared.add(m.group(1))
            # moderngl resolves '#include "x"' itself, even inside comments,
            # and fails on names it does not know: defuse leftovers.
            out.append(_LEFTOVER_INCLUDE_RE.sub("# include", line))
        if parent is None and not seen_version:
            raise ShaderError(f"{fname}: no #version line (stages need one; includes are "
                              f"loaded through #include)")

    emit(name, None)
    out[table_at] = _TABLE_PREFIX + " " + " ".join(f"{i}={f}" for i, f in enumerate(files))
    return "\n".join(out) + "\n", files, declared


def include_source(name: str = "common_probewarp.glsl", defines: dict | None = None, *, root=None) -> str:
    """An include's GLSL for hosts that compile their own shaders.

    ``#define`` lines for ``defines`` (e.g. ``Streamer.defines``), then the
    file with its own includes expanded (each once; no ``#version``, no
    ``#line``): paste it right after your ``#version 450`` line.

    Raises
    ------
    ShaderError
        Missing file, or a define that no file declares overridable.
    """
    defines = _check_defines(defines)
    root = _root(root)
    files: list[str] = []
    declared: set[str] = set()
    out: list[str] = []

    def emit(fname: str, parent: str | None) -> None:
        files.append(fname)
        for lineno, line in enumerate(_read(root, fname, parent).splitlines(), 1):
            if _VERSION_RE.match(line):
                raise ShaderError(f"{fname}:{lineno}: #version in an include")
            m = _INCLUDE_RE.match(line)
            if m:
                if m.group(1) not in files:
                    emit(m.group(1), fname)
                continue
            m = _IFNDEF_RE.match(line)
            if m:
                declared.add(m.group(1))
            out.append(_LEFTOVER_INCLUDE_RE.sub("# include", line))

    emit(name, None)
    unknown = sorted(set(defines) - declared)
    if unknown:
        raise ShaderError(f"{name}: no '#ifndef' default for define(s) {unknown} in {', '.join(files)}")
    head = [f"#define {k} {_format_value(v)}" for k, v in defines.items()]
    return "\n".join(head + out) + "\n"


def _check_defines(defines: dict | None) -> dict:
    defines = dict(defines or {})
    for key in defines:
        if not isinstance(key, str) or not _IDENT_RE.match(key):
            raise ValueError(f"define names must be identifiers, got {key!r}")
    return defines


def load(name: str, defines: dict | None = None, *, root=None) -> str:
    """GLSL source of one stage, includes resolved, defines injected.

    Parameters
    ----------
    name : str
        File name in the shader folder, e.g. ``"sample_cubearray.cs"``.
    defines : dict of str -> int, float, bool or str, optional
        Written as ``#define KEY VALUE`` after ``#version``; each KEY must be
        declared overridable (``#ifndef KEY``) by the stage or one of its
        includes.
    root : path or ``importlib.resources`` Traversable, optional
        Folder to load from instead of :func:`shader_root` (tests).

    Returns
    -------
    str
        One source string with ``#line`` markers; the comment right after
        ``#version`` maps source-string ids to file names
        (:func:`source_files` reads it back).

    Raises
    ------
    ShaderError
        Missing file, ``#version`` in an include or missing in a stage, or a
        define that no file declares.
    """
    defines = _check_defines(defines)
    src, files, declared = _expand(name, defines, _root(root))
    unknown = sorted(set(defines) - declared)
    if unknown:
        raise ShaderError(f"{name}: no '#ifndef' default for define(s) {unknown} in "
                          f"{', '.join(files)}")
    return src


def _root(root):
    if root is None:
        return shader_root()
    return Path(root) if isinstance(root, (str, Path)) else root


def source_files(source: str) -> list[str]:
    """File names by source-string id, read from a :func:`load` result's table comment."""
    m = _TABLE_RE.search(source)
    if not m:
        return []
    files = []
    for item in m.group(1).split():
        _, _, fname = item.partition("=")
        files.append(fname)
    return files


def translate_log(log: str, files: list[str]) -> str:
    """Rewrite compiler references ``id:line(col)`` (Mesa), ``id(line)`` (NVIDIA)
    and ``ERROR: id:line:`` (AMD, Intel) into ``file:line`` form."""
    def name(sid: str) -> str:
        i = int(sid)
        return files[i] if 0 <= i < len(files) else sid

    log = re.sub(r"(?m)(?<![\w.:])(\d+):(\d+)\((\d+)\)",
                 lambda m: f"{name(m.group(1))}:{m.group(2)}({m.group(3)})", log)
    log = re.sub(r"(?m)^(\s*)(\d+)\((\d+)\)(\s*:)",
                 lambda m: f"{m.group(1)}{name(m.group(2))}:{m.group(3)}{m.group(4)}", log)
    log = re.sub(r"(ERROR|WARNING): (\d+):(\d+):",
                 lambda m: f"{m.group(1)}: {name(m.group(2))}:{m.group(3)}:", log)
    return log


def _rewrite(exc: Exception, stages: dict[str, tuple[str, str]]) -> ShaderError:
    """moderngl's error -> ShaderError with file names (stages: kw -> (file, source))."""
    msg = str(exc)
    failed = [kw for kw in stages if f"\n{kw}\n" in msg]
    if len(failed) == 1:
        fname, src = stages[failed[0]]
        msg = translate_log(msg, source_files(src))
        head = f"{fname}: "
    else:  # link errors (no stage named) or several stages in one message
        head = "program " + ", ".join(f"{kw[:-7]}={f}" for kw, (f, _) in stages.items()) + ": "
    return ShaderError(head + msg.strip())


def program(ctx: moderngl.Context, vertex: str, fragment: str | None = None,
            geometry: str | None = None, defines: dict | None = None, *, root=None,
            **kwargs) -> moderngl.Program:
    """Compile and link a program from shader files.

    Parameters
    ----------
    ctx : moderngl.Context
    vertex, fragment, geometry : str
        File names (``"decode_probe.vs"``, ...); ``fragment`` may be None for
        transform feedback programs.
    defines : dict, optional
        Injected into every stage; each name must be declared overridable by
        at least one of them.
    root : optional
        Shader folder (see :func:`load`).
    **kwargs
        Passed to ``ctx.program`` (``varyings``, ``fragment_outputs``, ...).

    Raises
    ------
    ShaderError
        With the failing file and ``file:line`` references.
    """
    defines = _check_defines(defines)
    root = _root(root)
    named = {"vertex_shader": vertex, "fragment_shader": fragment, "geometry_shader": geometry}
    stages, declared = {}, set()
    for kw, fname in named.items():
        if fname is None:
            continue
        src, _, decl = _expand(fname, defines, root)
        stages[kw] = (fname, src)
        declared |= decl
    unknown = sorted(set(defines) - declared)
    if unknown:
        raise ShaderError(f"no '#ifndef' default for define(s) {unknown} in any of "
                          f"{[f for f, _ in stages.values()]}")
    try:
        return ctx.program(**{kw: src for kw, (_, src) in stages.items()}, **kwargs)
    except moderngl.Error as exc:
        raise _rewrite(exc, stages) from None


def compute(ctx: moderngl.Context, name: str, defines: dict | None = None, *,
            root=None) -> moderngl.ComputeShader:
    """Compile a compute shader file (``*.cs``); see :func:`load` for ``defines``.

    Raises
    ------
    ShaderError
        With the file name and ``file:line`` references.
    """
    src = load(name, defines, root=root)
    try:
        return ctx.compute_shader(src)
    except moderngl.Error as exc:
        raise _rewrite(exc, {"compute_shader": (name, src)}) from None
