"""Which room may import which (README "Rooms"): checked on the source, by AST.

The format layer is the one both halves read, so it imports no other room;
the runtime embeds in host renderers, so it imports the format layer and
nothing of the producer. Breaking a rule here is a design change: update the
README's map with it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: room -> the probewarp rooms its modules may import (besides itself).
ALLOWED = {
    "format": set(),
    "runtime": {"format", "shaders"},
    "baker": {"format"},
    "baselines": {"format", "baker", "runtime", "shaders"},
    "capture": {"format", "baker", "runtime", "shaders"},
    "cli": {"format", "baker", "baselines", "capture", "runtime", "demo"},
    "demo": {"format", "baker", "baselines", "capture", "runtime", "shaders"},
}
#: Third-party modules the format layer may import at module level (numpy + lz4 only).
FORMAT_THIRD_PARTY = {"numpy", "lz4"}


def _imports(path: Path, top_level_only: bool = False):
    """(module name, line, at module level) of every import in a file."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: relative import; the tree uses absolute "
                                 "probewarp.* imports so that a module's room is visible")


def _room_files(room):
    return sorted((ROOT / room).rglob("*.py"))


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_rooms_import_only_what_the_map_allows(room):
    bad = []
    for f in _room_files(room):
        for mod, line, _ in _imports(f):
            parts = mod.split(".")
            if parts[0] != "probewarp":
                continue
            other = parts[1] if len(parts) > 1 else ""
            if other != room and other not in ALLOWED[room]:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, f"room {room!r} may import {sorted(ALLOWED[room]) or 'no other room'}:\n" + "\n".join(bad)


def test_format_layer_imports_numpy_and_lz4_only_at_module_level():
    import sys
    std = set(sys.stdlib_module_names)
    bad = []
    for f in _room_files("format"):
        for mod, line, top in _imports(f):
            root = mod.split(".")[0]
            if top and root not in std and root != "probewarp" and root not in FORMAT_THIRD_PARTY:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod} at module level")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule above can fail: a file that imports the baker from the runtime is caught."""
    f = tmp_path / "x.py"
    f.write_text("import numpy\nfrom probewarp.baker.bake import bake\n")
    mods = [m for m, _, _ in _imports(f)]
    assert "probewarp.baker.bake" in mods
    assert "baker" not in ALLOWED["runtime"]
