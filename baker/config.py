"""Tunables of the baker, in one commented place.

Conventions shared with the runtime and outside readers (tonemap, warp miss
rule, tolerances of probe sets) are in :mod:`probewarp.format.constants`;
kernels read their numba switches from here.
"""

# --- numba -----------------------------------------------------------------
#: ``fastmath`` for jitted kernels. Off: the CPU reference decoder is the
#: oracle the GPU is checked against, and reassociation would blur that.
NUMBA_FASTMATH = False
#: Compile-once cache on disk (first calls cost ~1 s each otherwise).
NUMBA_CACHE = True

# --- the default bake ---------------------------------------------------------
#: Stored prototype texel format of a default bake: the point the measured
#: rate-distortion curve chose (``benchmarks/bench_rd.py`` ->
#: ``benchmarks/results/rd.json``, two scenes; README "Choosing the default").
DEFAULT_TEXEL_FORMAT = "bc6h"
#: Where the default's 4 x 4 blocks do not tile the prototype faces (Rp not
#: a multiple of 4), the default bake stores this instead.
FALLBACK_TEXEL_FORMAT = "rgba16f"


def default_texel_format(prototype_res: int) -> str:
    """The texel format a bake that names none stores at ``Rp = prototype_res``."""
    return DEFAULT_TEXEL_FORMAT if int(prototype_res) % 4 == 0 else FALLBACK_TEXEL_FORMAT

#: Prototypes per page (M) and probes per page of a default bake: about 200
#: bytes a probe at R = 16 with BC6H texels (the rate the optimiser issue
#: asked for; ``benchmarks/bench_bake.py`` -> town 199, interior 205
#: B/probe, warp +1.29 / +2.60 dB over the no-warp dictionary; larger M paid
#: more than Rp = 2R or per-texel depth at these bytes: README "The optimiser").
DEFAULT_PROTOTYPES = 512
DEFAULT_PAGE_PROBES = 4096
#: Probes blended per position (N).
DEFAULT_TAPS = 4
#: Outer iterations of the learner, at most: a fit stops earlier when its
#: held-out probes' loss improves by less than its ``tol`` in one iteration.
DEFAULT_MAX_ITERATIONS = 8

# --- pages ------------------------------------------------------------------
#: Halo of a page, in probe spacings: every page is fitted with the probes of
#: other pages this close to it, so border probes see the context inner
#: ones do (``benchmarks/bench_halo.py`` measured the seam against it).
DEFAULT_HALO = 1.0
#: A lattice with holes found in a set without grid metadata bakes as a
#: sparse grid (the axis fill between probes, a 7-8 B/probe hash) when at
#: least this share of its points hold probes, else scattered (the
#: tetrahedral rule, an 80-95 B/probe index). Measured with
#: benchmarks/bench_scattered.py (results/scattered*.json): at a quarter kept
#: the sparse grid collapses (16.6 vs 24.8 dB town, 17.2 vs 19.1 interior);
#: at half it is better and cheaper on the town (25.15 dB at 120 B vs 24.94 at
#: 197) and 0.56 dB lower at 62 % of the bytes on the interior; at three
#: quarters better and cheaper (town 25.56 at 88 B vs 25.17 at 163).
HOLES_GRID_MIN_FILL = 0.5

# --- probe-set storage -------------------------------------------------------
#: Chunked (zarr) probe stores: probes per chunk along the probe axis, at
#: most; fewer when one chunk would exceed ZARR_CHUNK_MAX_BYTES uncompressed.
ZARR_CHUNK_PROBES = 256
ZARR_CHUNK_MAX_BYTES = 64 * 2 ** 20
#: Bytes of decompressed chunks a lazy (zarr) probe set keeps in its LRU
#: cache, so that neighbouring pages and halos read each chunk about once.
LAZY_CACHE_BYTES = 256 * 2 ** 20
#: Probes per batch when an in-memory set is walked chunk-wise (validation,
#: statistics, saving).
ITER_BATCH_PROBES = 256

# --- HDR image import / export ----------------------------------------------
#: Sub-samples per output texel (per axis) when resampling images to cubes.
IMPORT_SUPERSAMPLE = 4
#: Image file suffixes the importer reads (lower case).
HDR_SUFFIXES = (".exr", ".hdr")
