"""The GPU layout: every buffer record, binding point, texture unit, uniform
and shared constant the probewarp shaders read, in one place (RTXGI
``DDGIVolumeDescGPU.h`` style, STYLE.md §3 and §12).

The host packs with the functions below; the GLSL side receives every
number here as a ``#define`` (:func:`glsl_defines`), never as a literal:
``shaders/pw_layout.glsl`` is generated from this module
(:func:`glsl_header`, committed so every shader compiles on its own;
``tests/test_layout.py`` checks that regenerating it gives the same text and
that the driver's std430 offsets and strides equal the dtypes' below).
Python may still override any of them through the loader's ``defines``
(``Streamer.defines`` passes the values of this module).

Records (std430, little-endian; byte offsets in the comments):

- code word, ``uint`` per tap (:func:`pack_codes`; decoded by GLSL
  ``pw_code_at``): bits 0..15 page-local prototype index, bits 16..23 the
  weight byte, weight = byte * CODE_WEIGHT_SCALE (1/128, the archive's
  ``u8/128`` :func:`probewarp.format.texformats.decode_weights`).
- :data:`SPHERE_DTYPE` (32 bytes, :func:`pack_spheres`; read by GLSL
  ``pw_warp_direction``): an explicit flag says "no parallax", no sentinel
  radius.
- :data:`HASH_ENTRY_DTYPE` (8 bytes): the spatial hash row (key, record),
  record = page << RECORD_PAGE_SHIFT | local (:mod:`.spatialhash`).
- page slot: ``int32`` per page, :data:`PAGE_ABSENT` (-1) when not resident.
- :data:`POSITION_DTYPE` (16 bytes): one query position of the decode passes
  (code_at.cs, decode_cubemap.cs).
- :func:`code_record_dtype`: one position's merged code, written by
  code_at.cs and read by decode_cubemap.cs / field_view.fs.
- scattered sets (:mod:`.tetindex`): :data:`PROBE_DTYPE` (16 bytes: a
  probe's position and record), :data:`SIMPLEX_DTYPE` (16 bytes: up to 4
  probe ids, :data:`SIMPLEX_NONE` in unused slots) and the cell list
  (``uint``: offsets, then element ids), read by GLSL ``pw_find_probes``
  when ``PW_SCATTERED`` is 1.
"""
from __future__ import annotations

import numpy as np

from probewarp.format import constants, spatialhash, texformats

# --- the code word (uint per tap) --------------------------------------------
#: Bits of the page-local prototype index (low bits of the word).
CODE_INDEX_BITS = 16
CODE_INDEX_MASK = (1 << CODE_INDEX_BITS) - 1
#: The weight byte starts here (8 bits: the archive's u8 weights).
CODE_WEIGHT_SHIFT = CODE_INDEX_BITS
#: weight = byte * CODE_WEIGHT_SCALE (exactly 1/128).
CODE_WEIGHT_SCALE = 1.0 / texformats.WEIGHT_ONE
CODE_DTYPE = np.dtype("<u4")

# --- the prototype sphere ------------------------------------------------------
#: SPHERE_FLAG_NO_PARALLAX: the sphere is infinitely far (radius ignored):
#: the warp returns the direction itself (DESIGN-NOTES §3, rho -> infinity).
SPHERE_FLAG_NO_PARALLAX = 1
SPHERE_DTYPE = np.dtype([
    ("centre", "<f4", 3),      # 0   vec3  world position of the centre
    ("radius", "<f4"),         # 12  float rho (> 0; 0 when no parallax)
    ("flags", "<u4"),          # 16  uint  bit 0: SPHERE_FLAG_NO_PARALLAX
    ("reserved", "<u4", 3),    # 20  uint[3] zero
])                             # 32 bytes
assert SPHERE_DTYPE.itemsize == 32

# --- the spatial hash row ------------------------------------------------------
RECORD_PAGE_SHIFT = spatialhash.PAGE_SHIFT
RECORD_LOCAL_MASK = spatialhash.MAX_PAGE_PROBES - 1
HASH_EMPTY = int(spatialhash.EMPTY)
HASH_ENTRY_DTYPE = np.dtype([
    ("key", "<u4"),            # 0   lattice id, HASH_EMPTY for empty rows
    ("record", "<u4"),         # 4   page << RECORD_PAGE_SHIFT | local
])                             # 8 bytes

# --- the page table on the GPU -------------------------------------------------
PAGE_SLOT_DTYPE = np.dtype("<i4")
PAGE_ABSENT = -1

# --- per-position records of the decode passes ----------------------------------
POSITION_DTYPE = np.dtype([
    ("xyz", "<f4", 3),         # 0   world position
    ("reserved", "<f4"),       # 12  zero
])                             # 16 bytes
CODE_ENTRY_DTYPE = np.dtype([
    ("layer", "<i4"),          # 0   global prototype layer (slot * pw_slot_prototypes + m)
    ("weight", "<f4"),         # 4   blend weight (probe weight * code weight)
])                             # 8 bytes
#: Most probes one position's stencil names by default (8 grid corners); the
#: streamer overrides it per archive (PW_CODE_CORNERS): a code holds
#: CODE_CORNERS x N entries.
CODE_CORNERS = 8


def code_record_dtype(n_taps: int, corners: int = CODE_CORNERS) -> np.dtype:
    """One position's merged code (code_at.cs ``PwCodeRecord``) for ``n_taps``:
    ``n`` (0) entries used, ``reserved`` (4), ``entries`` (8) of
    ``corners * n_taps`` :data:`CODE_ENTRY_DTYPE` (PW_MAX_CODE in GLSL).
    ``corners``: the most probes one position's stencil names, GLSL
    ``PW_CODE_CORNERS`` (``Streamer.code_corners``: 8 for grids, 32 for sparse
    grids of the fill rule, 4 for scattered sets)."""
    return np.dtype([("n", "<i4"), ("reserved", "<i4"),
                     ("entries", CODE_ENTRY_DTYPE, (int(corners) * int(n_taps),))])


# --- scattered sets: the tetrahedral index (format/tetindex.py) --------------------
PROBE_DTYPE = np.dtype([
    ("xyz", "<f4", 3),         # 0   probe position (as the pages store it, float32)
    ("record", "<u4"),         # 12  page << RECORD_PAGE_SHIFT | local
])                             # 16 bytes
#: Unused corner of a simplex record (triangles, segments, points).
SIMPLEX_NONE = HASH_EMPTY
SIMPLEX_DTYPE = np.dtype([
    ("probes", "<u4", 4),      # 0   probe ids; 4: tetrahedron, 3: triangle, 2: segment, 1: point
])                             # 16 bytes
CELL_DTYPE = np.dtype("<u4")

# --- binding points and texture units ----------------------------------------------
#: SSBO binding points of common_probewarp.glsl (Streamer.bind).
BINDINGS = {"hash": 8, "pages": 9, "codes": 10, "spheres": 11,
            # scattered sets (PW_SCATTERED 1) in place of the hash
            "probes": 12, "simplices": 13, "cells": 14}
#: First texture unit of ``pw_prototypes[]`` (one unit per cube-map array).
UNIT_PROTOTYPES = 8
#: Most cube-map arrays the include can address.
MAX_ARRAYS = 8
#: SSBO bindings of the per-position passes (code_at.cs, decode_cubemap.cs, field_view.fs).
BINDING_POSITIONS = 0
BINDING_CODE_RECORDS = 1

#: Uniforms common_probewarp.glsl declares; Streamer.uniforms() sets exactly these.
UNIFORMS = ("pw_grid_lo", "pw_grid_step", "pw_grid_shape", "pw_hash_mask", "pw_hash_max_probe",
            "pw_page_probes", "pw_slot_prototypes", "pw_pages_per_array", "pw_prototype_res", "pw_max_lod")
#: The uniforms of a program compiled for a scattered archive (PW_SCATTERED 1):
#: the cell grid of the tetrahedral index instead of the lattice and hash.
SCATTERED_UNIFORMS = ("pw_cell_lo", "pw_cell_hi", "pw_cell_scale", "pw_cell_shape", "pw_cell_max_items",
                      "pw_page_probes", "pw_slot_prototypes", "pw_pages_per_array", "pw_prototype_res",
                      "pw_max_lod")


# --- pack (host) -------------------------------------------------------------------
def pack_codes(indices: np.ndarray, weights_u8: np.ndarray) -> np.ndarray:
    """(n, N) page-local indices and (n, N) uint8 stored weights -> (n, N)
    :data:`CODE_DTYPE` words ``index | byte << CODE_WEIGHT_SHIFT``. Unpacked by
    GLSL ``pw_code_at``."""
    idx = np.asarray(indices, np.uint32)
    if idx.size and int(idx.max()) > CODE_INDEX_MASK:
        raise ValueError(f"prototype index {int(idx.max())} does not fit {CODE_INDEX_BITS} bits")
    return (idx | (np.asarray(weights_u8, np.uint32) << CODE_WEIGHT_SHIFT)).astype(CODE_DTYPE)


def pack_spheres(centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(M, 3) centres and (M,) radii -> (M,) :data:`SPHERE_DTYPE`. Radii that are
    not finite and positive (``inf``: no parallax) get SPHERE_FLAG_NO_PARALLAX and
    radius 0. Unpacked by GLSL ``pw_warp_direction``."""
    r = np.asarray(radii, np.float32).reshape(-1)
    out = np.zeros(r.shape[0], SPHERE_DTYPE)
    out["centre"] = np.asarray(centres, np.float32).reshape(-1, 3)
    far = ~(np.isfinite(r) & (r > 0))
    out["radius"] = np.where(far, 0.0, r)
    out["flags"] = np.where(far, SPHERE_FLAG_NO_PARALLAX, 0)
    return out


def pack_hash(table: np.ndarray) -> np.ndarray:
    """(capacity, 2) uint32 spatial hash -> (capacity,) :data:`HASH_ENTRY_DTYPE`."""
    t = np.ascontiguousarray(table, "<u4").reshape(-1, 2)
    return t.view(HASH_ENTRY_DTYPE).reshape(-1)


def pack_probes(positions: np.ndarray, records: np.ndarray) -> np.ndarray:
    """(P, 3) positions and (P,) records -> (P,) :data:`PROBE_DTYPE`."""
    p = np.asarray(positions, np.float32).reshape(-1, 3)
    out = np.zeros(p.shape[0], PROBE_DTYPE)
    out["xyz"] = p
    out["record"] = np.asarray(records, np.uint32).reshape(-1)
    return out


def pack_simplices(ids: np.ndarray) -> np.ndarray:
    """(E, 4) probe ids, negative (or SIMPLEX_NONE) where unused -> (E,) :data:`SIMPLEX_DTYPE`."""
    a = np.asarray(ids, np.int64).reshape(-1, 4)
    out = np.zeros(a.shape[0], SIMPLEX_DTYPE)
    out["probes"] = np.where(a < 0, int(SIMPLEX_NONE), a).astype(np.uint32)
    return out


def pack_positions(positions: np.ndarray) -> np.ndarray:
    """(Q, 3) -> (Q,) :data:`POSITION_DTYPE`."""
    q = np.asarray(positions, np.float32).reshape(-1, 3)
    out = np.zeros(q.shape[0], POSITION_DTYPE)
    out["xyz"] = q
    return out


# --- GLSL ------------------------------------------------------------------------------
def _float(v: float) -> str:
    text = repr(float(v))
    return text if any(c in text for c in ".eE") else text + ".0"


def glsl_defines() -> dict:
    """``#define`` name -> GLSL token for every number above (what
    ``shaders/pw_layout.glsl`` declares as overridable defaults)."""
    return {
        "PW_BINDING_HASH": BINDINGS["hash"], "PW_BINDING_PAGES": BINDINGS["pages"],
        "PW_BINDING_CODES": BINDINGS["codes"], "PW_BINDING_SPHERES": BINDINGS["spheres"],
        "PW_UNIT_PROTOTYPES": UNIT_PROTOTYPES, "PW_MAX_ARRAYS": MAX_ARRAYS,
        "PW_BINDING_POSITIONS": BINDING_POSITIONS, "PW_BINDING_CODE_RECORDS": BINDING_CODE_RECORDS,
        "PW_CODE_INDEX_MASK": f"0x{CODE_INDEX_MASK:X}u", "PW_CODE_WEIGHT_SHIFT": f"{CODE_WEIGHT_SHIFT}u",
        "PW_CODE_WEIGHT_SCALE": _float(CODE_WEIGHT_SCALE), "PW_CODE_CORNERS": CODE_CORNERS,
        "PW_SPHERE_FLAG_NO_PARALLAX": f"{SPHERE_FLAG_NO_PARALLAX}u",
        "PW_RECORD_PAGE_SHIFT": f"{RECORD_PAGE_SHIFT}u", "PW_RECORD_LOCAL_MASK": f"0x{RECORD_LOCAL_MASK:X}u",
        "PW_EMPTY": f"0x{HASH_EMPTY:X}u", "PW_PAGE_ABSENT": PAGE_ABSENT,
        "PW_TONEMAP_GAMMA": _float(constants.TONEMAP_GAMMA), "PW_TONEMAP_Y_MAX": _float(constants.TONEMAP_Y_MAX),
        "PW_BINDING_PROBES": BINDINGS["probes"], "PW_BINDING_SIMPLICES": BINDINGS["simplices"],
        "PW_BINDING_CELLS": BINDINGS["cells"], "PW_SIMPLEX_NONE": f"0x{SIMPLEX_NONE:X}u",
        "PW_TET_INSIDE_EPS": _float(constants.TET_INSIDE_EPS), "PW_TET_FLAT_REL": _float(constants.TET_FLAT_REL),
    }


_SCALARS = {"<f4": "float", "<u4": "uint", "<i4": "int"}
#: Structs of the generated header (GLSL name, dtype); arrays of struct
#: records whose length depends on PW_N_TAPS are written with PW_MAX_CODE.
_STRUCTS = [("PwSphere", SPHERE_DTYPE), ("PwHashEntry", HASH_ENTRY_DTYPE), ("PwPosition", POSITION_DTYPE),
            ("PwCodeEntry", CODE_ENTRY_DTYPE), ("PwCodeRecord", code_record_dtype(1)),
            ("PwProbe", PROBE_DTYPE), ("PwSimplex", SIMPLEX_DTYPE)]
#: GLSL struct name -> dtype (code records for n_taps = 1; see code_record_dtype).
STRUCT_DTYPES = dict(_STRUCTS)


def _struct_glsl(name, dt):
    lines = [f"struct {name} {{"]
    for field in dt.names:
        fdt, off = dt.fields[field][:2]
        base, shape = fdt.base, fdt.shape
        if base.names:                       # an array of records: PW_MAX_CODE long
            sub = next(n for n, d in _STRUCTS if d == base)
            decl = f"{sub} {field}[PW_MAX_CODE];"
        elif shape == (3,) and base.str == "<f4":
            decl = f"vec3 {field};"
        elif shape:
            decl = f"{_SCALARS[base.str]} {field}[{shape[0]}];"
        else:
            decl = f"{_SCALARS[base.str]} {field};"
        lines.append(f"    {decl:<32}// {off}")
    size = (f"{dt.fields['entries'][1]} + {CODE_ENTRY_DTYPE.itemsize} * PW_MAX_CODE"
            if name == "PwCodeRecord" else str(dt.itemsize))
    lines.append(f"}};{'':<32}// {size} bytes")
    return "\n".join(lines)


def glsl_header() -> str:
    """The text of ``shaders/pw_layout.glsl`` (generated; do not edit the file)."""
    out = ["// pw_layout.glsl -- GENERATED by probewarp.format.layout.glsl_header()",
           "// (python -m probewarp.format.layout > shaders/pw_layout.glsl); do not edit:",
           "// tests/test_layout.py checks that it is current and that the driver's",
           "// std430 offsets equal the numpy dtypes'. Every binding point, texture unit,",
           "// bit field and shared constant of the probewarp shaders, as overridable",
           "// defaults (the loader's defines win), and the records the host packs",
           "// (byte offsets in the comments). No #version: include it.",
           "",
           "#ifndef PW_N_TAPS",
           "#define PW_N_TAPS 4            // N, codes per probe (the archive's n_taps; Streamer.defines)",
           "#endif"]
    for k, v in glsl_defines().items():
        out += [f"#ifndef {k}", f"#define {k} {v}", "#endif"]
    out += ["// entries of one position's merged code: 8 corners x N taps",
            "#define PW_MAX_CODE (PW_CODE_CORNERS * PW_N_TAPS)", ""]
    for name, dt in _STRUCTS:
        out += [_struct_glsl(name, dt), ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(glsl_header(), end="")
