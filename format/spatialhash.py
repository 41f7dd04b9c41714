"""The GPU-ready spatial hash: grid cell -> probe record, by open addressing.

One hash function, written twice: here (numpy, used by the baker, the CPU
reference decoder and the tests) and in ``shaders/common_probewarp.glsl``
(``pw_hash``/``pw_find_record``). ``tests/test_runtime_hash.py`` checks that
the two agree slot by slot.

- **Key**: the linear id of a lattice point, ``(i * ny + j) * nz + k``
  (DESIGN-NOTES §2 order), as a ``uint32``; lattices must have fewer than
  ``2^32 - 1`` points.
- **Hash**: MurmurHash3's 32-bit finaliser (``fmix32``) of the key, masked to
  the table's power-of-two capacity.
- **Probing**: linear (``slot + 1``, wrapping). A lookup stops at the key, at
  an empty slot, or after ``max_probe`` slots (the longest probe sequence of
  the table, stored beside it so GLSL loops have a bound).
- **Table**: ``(capacity, 2) uint32`` rows ``(key, record)``; empty rows are
  ``(EMPTY, EMPTY)``. The record is ``page << 16 | local``: the page of the
  archive that holds the probe and the probe's index inside that page
  (pages hold at most 65,536 probes).
- **Load**: at most :data:`MAX_LOAD` (capacity is the next power of two).

Sparse grids (probes only where people can go) store only their occupied
lattice points: a lookup of any other cell returns :data:`EMPTY`, and
decoders drop that corner (see ``docs/FORMAT.md``, "Decoding").
"""
from __future__ import annotations

import numpy as np

EMPTY = np.uint32(0xFFFFFFFF)
MAX_LOAD = 0.5
PAGE_SHIFT = 16
MAX_PAGE_PROBES = 1 << PAGE_SHIFT
MAX_PAGES = 1 << (32 - PAGE_SHIFT)
_M32 = np.uint64(0xFFFFFFFF)


def fmix32(key) -> np.ndarray:
    """MurmurHash3's finaliser on ``uint32`` keys (array in, ``uint32`` array out)."""
    h = np.asarray(key, np.uint64) & _M32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    h ^= h >> np.uint64(16)
    return h.astype(np.uint32)


def record(page, local) -> np.ndarray:
    """Pack ``page << 16 | local`` (``uint32``)."""
    page, local = np.asarray(page, np.int64), np.asarray(local, np.int64)
    if page.size and (page.max() >= MAX_PAGES or local.max() >= MAX_PAGE_PROBES or min(page.min(), local.min()) < 0):
        raise ValueError(f"records need page < {MAX_PAGES} and local < {MAX_PAGE_PROBES}")
    return ((page << PAGE_SHIFT) | local).astype(np.uint32)


def split_record(rec):
    """Inverse of :func:`record`: ``(page, local)`` int64 arrays."""
    rec = np.asarray(rec, np.int64)
    return rec >> PAGE_SHIFT, rec & (MAX_PAGE_PROBES - 1)


def first_bad_record(rec, page_probes) -> int:
    """Index of the first record that names a page the page table does not
    have or a probe beyond that page's ``page_probes`` (the table's
    ``n_probes``), -1 when all are inside: what the GPU follows must land in
    its buffers (the hash's records, a tetrahedral index's probes)."""
    page, local = split_record(rec)
    counts = np.asarray(page_probes, np.int64)
    bad = page >= counts.size
    if not bad.any() and page.size:
        bad = local >= counts[page]
    return int(np.flatnonzero(bad)[0]) if bad.any() else -1


def capacity_for(n: int) -> int:
    """Power-of-two table size with load at most :data:`MAX_LOAD` (at least 16)."""
    need = max(16, int(np.ceil(max(int(n), 1) / MAX_LOAD)))
    return 1 << (need - 1).bit_length()


def build(keys, records) -> tuple[np.ndarray, int]:
    """Build the table.

    Parameters
    ----------
    keys : (n,) uint32, distinct, none equal to EMPTY
    records : (n,) uint32

    Returns
    -------
    table : (capacity, 2) uint32
    max_probe : int
        Longest probe sequence (>= 1): every stored key is found within it.
    """
    keys = np.asarray(keys, np.uint32).ravel()
    records = np.asarray(records, np.uint32).ravel()
    if keys.shape != records.shape:
        raise ValueError(f"{keys.size} keys but {records.size} records")
    if np.any(keys == EMPTY):
        raise ValueError("a key equals the EMPTY marker")
    if np.unique(keys).size != keys.size:
        raise ValueError("keys must be distinct (two probes in one grid cell)")
    cap = capacity_for(keys.size)
    mask = cap - 1
    table = np.full((cap, 2), EMPTY, np.uint32)
    home = fmix32(keys).astype(np.int64) & mask
    # Insertion in key order: the table is a pure function of the key set.
    order = np.argsort(keys, kind="stable")
    used = np.zeros(cap, bool)
    max_probe = 1
    for i in order:
        s, n = int(home[i]), 1
        while used[s]:
            s = (s + 1) & mask
            n += 1
        used[s] = True
        table[s] = (keys[i], records[i])
        max_probe = max(max_probe, n)
    return table, max_probe


def lookup(table: np.ndarray, max_probe: int, keys) -> np.ndarray:
    """Records of ``keys`` (any shape), :data:`EMPTY` where absent: the
    Python twin of GLSL ``pw_find_record``."""
    keys = np.asarray(keys, np.uint32)
    flat = keys.ravel()
    cap = table.shape[0]
    mask = cap - 1
    out = np.full(flat.shape, EMPTY, np.uint32)
    slot = fmix32(flat).astype(np.int64) & mask
    live = flat != EMPTY
    for _ in range(int(max_probe)):
        if not live.any():
            break
        row = table[slot]
        hit = live & (row[:, 0] == flat)
        out[hit] = row[hit, 1]
        live &= ~hit & (row[:, 0] != EMPTY)
        slot = (slot + 1) & mask
    return out.reshape(keys.shape)
