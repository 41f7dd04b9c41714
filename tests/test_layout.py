"""One GPU layout truth (probewarp.format.layout): the generated GLSL header is
current, and the driver's std430 offsets, strides, bindings, texture unit and
uniform names of the compiled probewarp programs equal what layout.py says."""
from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest

from probewarp.format import layout
from synth import make_archive

N_TAPS = 3

# A host shader using every part of common_probewarp.glsl (so no uniform is
# optimised away): pw_decode and pw_lod_for.
_ALL_USES = """#version 450
#include "common_probewarp.glsl"
layout(local_size_x = 1) in;
layout(std430, binding = 0) writeonly buffer O { vec4 outv[]; };
void main() { outv[0] = pw_decode(vec3(0.0), vec3(0.0, 0.0, 1.0), pw_lod_for(0.1)); }
"""


def test_generated_header_is_current():
    """shaders/pw_layout.glsl is exactly what layout.glsl_header() generates
    (regenerate: python -m probewarp.format.layout > shaders/pw_layout.glsl)."""
    from probewarp.runtime.shaders import shader_root
    assert shader_root().joinpath("pw_layout.glsl").read_text(encoding="utf-8") == layout.glsl_header()


def test_no_layout_literals_left_in_shaders():
    """The literals the layout replaced do not come back in the shaders."""
    from probewarp.runtime.shaders import shader_root
    for name in ("common_probewarp.glsl", "code_at.cs", "decode_cubemap.cs", "field_view.fs", "sh_decode.cs"):
        text = shader_root().joinpath(name).read_text(encoding="utf-8")
        code = "\n".join(line.split("//")[0] for line in text.splitlines())
        for lit in ("0xFFFFu", "128.0", "1e-7", "2.2", "vec4 sphere", ".w <= 0"):
            assert lit not in code, f"{name}: literal {lit!r}"
        if name != "sh_decode.cs":          # the SH baseline's own buffers are not probewarp's layout
            assert not re.search(r"std430, binding = \d", code), f"{name}: literal SSBO binding"
        assert not re.search(r">>\s*16\b(?!;)", code.replace("key >> 16", "")), name


def test_pack_functions():
    codes = layout.pack_codes([[3, 70000 & 0xFFFF]], [[128, 255]])
    assert codes.dtype == layout.CODE_DTYPE
    assert (codes[0, 0] & layout.CODE_INDEX_MASK) == 3
    assert (codes[0, 0] >> layout.CODE_WEIGHT_SHIFT) * layout.CODE_WEIGHT_SCALE == 1.0
    with pytest.raises(ValueError):
        layout.pack_codes([[1 << 16]], [[1]])
    sp = layout.pack_spheres([[1, 2, 3], [4, 5, 6]], [2.5, np.inf])
    assert sp.dtype.itemsize == 32
    assert sp["flags"].tolist() == [0, layout.SPHERE_FLAG_NO_PARALLAX]
    assert sp["radius"].tolist() == [2.5, 0.0] and sp["reserved"].sum() == 0
    table = np.array([[5, 7], [layout.HASH_EMPTY, layout.HASH_EMPTY]], np.uint32)
    h = layout.pack_hash(table)
    assert h["key"].tolist() == [5, layout.HASH_EMPTY] and h["record"][0] == 7


# -- the driver's view -----------------------------------------------------------------
def _resources(GL, prog, interface):
    n = np.zeros(1, np.int32)
    GL.glGetProgramInterfaceiv(prog, interface, GL.GL_ACTIVE_RESOURCES, n)
    out = {}
    for i in range(int(n[0])):
        name = ctypes.create_string_buffer(256)
        length = ctypes.c_int(0)
        GL.glGetProgramResourceName(prog, interface, i, 256, ctypes.byref(length), name)
        out[name.raw[:length.value].decode()] = i
    return out


def _props(GL, prog, interface, index, props):
    vals = np.zeros(len(props), np.int32)
    length = np.zeros(1, np.int32)
    GL.glGetProgramResourceiv(prog, interface, index, len(props), np.array(props, np.uint32), len(props),
                              length, vals)
    return [int(v) for v in vals]


def driver_blocks(GL, prog) -> dict:
    """block name -> {binding, size, vars: {name: (offset, top_level_stride, array_stride)}}."""
    blocks = {}
    for name, i in _resources(GL, prog, GL.GL_SHADER_STORAGE_BLOCK).items():
        binding, size = _props(GL, prog, GL.GL_SHADER_STORAGE_BLOCK, i,
                               [GL.GL_BUFFER_BINDING, GL.GL_BUFFER_DATA_SIZE])
        blocks[name] = {"binding": binding, "size": size, "index": i, "vars": {}}
    by_index = {b["index"]: b for b in blocks.values()}
    for name, i in _resources(GL, prog, GL.GL_BUFFER_VARIABLE).items():
        blk, off, top, arr = _props(GL, prog, GL.GL_BUFFER_VARIABLE, i,
                                    [GL.GL_BLOCK_INDEX, GL.GL_OFFSET, GL.GL_TOP_LEVEL_ARRAY_STRIDE,
                                     GL.GL_ARRAY_STRIDE])
        by_index[blk]["vars"][name] = (off, top, arr)
    return blocks


def expected_vars(member: str, dt: np.dtype) -> dict:
    """What the driver reports for ``Struct member[]`` of dtype ``dt`` (std430):
    name -> (offset, top-level array stride, array stride)."""
    if dt.names is None:            # an array of scalars: its own ARRAY_STRIDE, no top-level stride
        return {f"{member}[0]": (0, 0, dt.itemsize)}
    top = dt.itemsize
    out = {}

    def walk(prefix, d, base):
        if d.names is None:
            if d.shape and d.base.names is None and not (d.shape == (3,) and d.base == np.dtype("<f4")):
                out[prefix + "[0]"] = (base, top, d.base.itemsize)     # scalar array
            else:
                out[prefix] = (base, top, 0)
            return
        for f in d.names:
            fd, off = d.fields[f][:2]
            if fd.base.names is not None and fd.shape:              # array of records
                for k in range(int(np.prod(fd.shape))):
                    walk(f"{prefix}.{f}[{k}]", fd.base, base + off + k * fd.base.itemsize)
            else:
                walk(f"{prefix}.{f}", fd, base + off)

    walk(f"{member}[0]", dt, 0)
    return out


def compare_block(block: dict, member: str, dt: np.dtype) -> list[str]:
    """Mismatches between a driver block holding ``member[]`` and ``dt``."""
    want = expected_vars(member, dt)
    got = block["vars"]
    bad = [f"{k}: driver {got.get(k)} layout {v}" for k, v in want.items() if got.get(k) != v]
    bad += [f"{k}: in the driver only" for k in set(got) - set(want)]
    # a runtime-sized array: the driver reports one element (Mesa rounds it up to 16 bytes)
    if block["size"] not in (0, dt.itemsize, -(-dt.itemsize // 16) * 16):
        bad.append(f"block size {block['size']} != {dt.itemsize}")
    return bad


BLOCKS = {   # GLSL block -> (member, dtype, binding)
    "PwHash": ("pw_hash_table", layout.HASH_ENTRY_DTYPE, layout.BINDINGS["hash"]),
    "PwPages": ("pw_page_slot", layout.PAGE_SLOT_DTYPE, layout.BINDINGS["pages"]),
    "PwCodes": ("pw_codes", layout.CODE_DTYPE, layout.BINDINGS["codes"]),
    "PwSpheres": ("pw_spheres", layout.SPHERE_DTYPE, layout.BINDINGS["spheres"]),
    "Positions": ("positions", layout.POSITION_DTYPE, layout.BINDING_POSITIONS),
    "Codes": ("records", layout.code_record_dtype(N_TAPS), layout.BINDING_CODE_RECORDS),
}


@pytest.fixture(scope="module")
def programs(gl_ctx, tmp_path_factory):
    from probewarp.runtime import shaders
    from probewarp.runtime.streamer import Streamer
    path, _, _ = make_archive(tmp_path_factory.mktemp("layout") / "a.pwa", N=N_TAPS, page_probes=30)
    s = Streamer(gl_ctx, path, page_slots=8)
    root = tmp_path_factory.mktemp("shaders")
    for f in ("common_probewarp.glsl", "pw_layout.glsl"):
        (root / f).write_text(shaders.shader_root().joinpath(f).read_text(encoding="utf-8"))
    (root / "all_uses.cs").write_text(_ALL_USES)
    progs = {
        "code_at.cs": shaders.compute(gl_ctx, "code_at.cs", s.defines),
        "decode_cubemap.cs": shaders.compute(gl_ctx, "decode_cubemap.cs", s.defines),
        "decode_cubemap.cs/per_texel": shaders.compute(gl_ctx, "decode_cubemap.cs",
                                                       dict(s.defines, CODE_PER_TEXEL=True)),
        "field_view": shaders.program(gl_ctx, "field_view.vs", "field_view.fs", defines=s.defines),
        "all_uses": shaders.compute(gl_ctx, "all_uses.cs", s.defines, root=root),
    }
    yield s, progs
    for p in progs.values():
        p.release()
    s.close()


def test_std430_blocks_match_the_dtypes(gl, programs):
    """Every SSBO block of the compiled programs: binding, element size and each
    field's offset and strides as the driver reports them equal layout.py's."""
    from probewarp.runtime.context import _gl
    GL = _gl()
    _, progs = programs
    seen = set()
    for pname, prog in progs.items():
        for bname, block in driver_blocks(GL, prog.glo).items():
            if bname not in BLOCKS:
                continue
            member, dt, binding = BLOCKS[bname]
            seen.add(bname)
            assert block["binding"] == binding, (pname, bname)
            assert compare_block(block, member, dt) == [], (pname, bname)
    assert seen == set(BLOCKS)


def test_a_moved_field_is_caught(gl, programs):
    """The comparison is not vacuous: a dtype with a field moved (or padded) fails it."""
    from probewarp.runtime.context import _gl
    GL = _gl()
    _, progs = programs
    block = driver_blocks(GL, progs["all_uses"].glo)["PwSpheres"]
    moved = np.dtype({"names": ["centre", "radius", "flags", "reserved"],
                      "formats": [("<f4", 3), "<f4", "<u4", ("<u4", 3)], "offsets": [0, 16, 12, 20]})
    assert compare_block(block, "pw_spheres", moved)
    padded = np.dtype({"names": list(layout.SPHERE_DTYPE.names),
                       "formats": [layout.SPHERE_DTYPE.fields[n][0] for n in layout.SPHERE_DTYPE.names],
                       "offsets": [0, 12, 16, 20], "itemsize": 48})
    assert compare_block(block, "pw_spheres", padded)
    assert compare_block(block, "pw_spheres", layout.SPHERE_DTYPE) == []


def test_uniforms_and_texture_unit_match_the_layout(gl, programs):
    """The pw_* uniforms the driver reports for a program using the whole include
    are exactly layout.UNIFORMS, which is what Streamer.uniforms() sets; the
    prototype samplers sit on layout.UNIT_PROTOTYPES onwards."""
    from probewarp.runtime.context import _gl
    GL = _gl()
    s, progs = programs
    prog = progs["all_uses"]
    names = _resources(GL, prog.glo, GL.GL_UNIFORM)
    pw = {re.sub(r"\[0\]$", "", n) for n in names if n.startswith("pw_")}
    assert pw == set(layout.UNIFORMS) | {"pw_prototypes"}
    assert tuple(s.uniforms()) == layout.UNIFORMS
    loc = GL.glGetUniformLocation(prog.glo, "pw_prototypes[0]")
    unit = np.zeros(1, np.int32)
    GL.glGetUniformiv(prog.glo, loc, unit)
    assert int(unit[0]) == layout.UNIT_PROTOTYPES
    for d in ("PW_BINDING_HASH", "PW_UNIT_PROTOTYPES", "PW_CODE_WEIGHT_SCALE", "PW_TONEMAP_GAMMA"):
        assert d in s.defines


def test_scattered_program_matches_the_layout(gl, tmp_path):
    """A program compiled for a scattered archive (PW_SCATTERED 1): the index's
    blocks (probes, simplices, cells) have layout.py's bindings, offsets and
    strides, and its pw_* uniforms are exactly layout.SCATTERED_UNIFORMS, which
    is what Streamer.uniforms() sets."""
    from probewarp.runtime import shaders
    from probewarp.runtime.context import _gl
    from probewarp.runtime.streamer import Streamer
    from synth import make_scattered_archive, scattered_positions
    GL = _gl()
    path, _, _ = make_scattered_archive(tmp_path / "s.pwa", scattered_positions("random", np.random.default_rng(0)),
                                        N=N_TAPS)
    root = tmp_path / "shaders"
    root.mkdir()
    for f in ("common_probewarp.glsl", "pw_layout.glsl"):
        (root / f).write_text(shaders.shader_root().joinpath(f).read_text(encoding="utf-8"))
    (root / "all_uses.cs").write_text(_ALL_USES)
    with Streamer(gl, path, page_slots=8) as s:
        prog = shaders.compute(gl, "all_uses.cs", s.defines, root=root)
        try:
            blocks = driver_blocks(GL, prog.glo)
            want = {"PwProbes": ("pw_probes", layout.PROBE_DTYPE, layout.BINDINGS["probes"]),
                    "PwSimplices": ("pw_simplices", layout.SIMPLEX_DTYPE, layout.BINDINGS["simplices"]),
                    "PwCells": ("pw_cells", layout.CELL_DTYPE, layout.BINDINGS["cells"])}
            assert "PwHash" not in blocks
            for bname, (member, dt, binding) in want.items():
                assert blocks[bname]["binding"] == binding, bname
                assert compare_block(blocks[bname], member, dt) == [], bname
            names = _resources(GL, prog.glo, GL.GL_UNIFORM)
            pw = {re.sub(r"\[0\]$", "", n) for n in names if n.startswith("pw_")}
            assert pw == set(layout.SCATTERED_UNIFORMS) | {"pw_prototypes"}
            assert tuple(s.uniforms()) == layout.SCATTERED_UNIFORMS
        finally:
            prog.release()
