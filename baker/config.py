"""Constants, tolerances and tunables of probewarp, in one commented place.

Every number that more than one module relies on lives here (trimesh
``constants.py`` style). Kernels read their numba switches from here too.
"""

# --- numba -----------------------------------------------------------------
#: ``fastmath`` for jitted kernels. Off: the CPU reference decoder is the
#: oracle the GPU is checked against, and reassociation would blur that.
NUMBA_FASTMATH = False
#: Compile-once cache on disk (first calls cost ~1 s each otherwise).
NUMBA_CACHE = True

# --- cubemaps (DESIGN-NOTES §1) ---------------------------------------------
#: Face order, OpenGL's.
FACE_NAMES = ("+X", "-X", "+Y", "-Y", "+Z", "-Z")

# --- the warp (DESIGN-NOTES §3) ---------------------------------------------
#: Miss rule: when the ray from the query position misses a prototype's
#: sphere (possible only from outside it) the discriminant is clamped at 0,
#: i.e. the ray's point of closest approach to the centre is used. The result
#: is continuous everywhere, never divides by zero for rho > 0, and is the
#: same formula on the CPU and in GLSL (``common_probewarp.glsl``).
WARP_MISS_RULE = "closest-approach"
#: Radii at or above this are treated as infinite (no parallax) by writers.
RADIUS_INFINITE = 1.0e30

# --- probe sets (DESIGN-NOTES §2) -------------------------------------------
#: Two probe positions closer than this (world units, relative to the set's
#: bounding-box diagonal) count as duplicates.
DUPLICATE_POSITION_REL_TOL = 1.0e-6
#: Largest finite float16 value; radiance above it cannot be stored as fp16.
FP16_MAX = 65504.0
#: Relative round-trip tolerance of float16 storage (10-bit mantissa).
FP16_REL_TOL = 2.0 ** -11
#: Grid check: a probe is "on" its grid point when within this distance,
#: relative to max(bounding-box diagonal, largest |coordinate|) (float32
#: positions carry ~6e-8 relative error; a mis-ordered grid is off by whole
#: spacings, so any grid with fewer than ~1e5 points per axis is told apart).
GRID_POSITION_REL_TOL = 1.0e-5
#: Sanitising: what +Inf radiance becomes (NaN and negative values become 0).
SANITIZE_POSINF_VALUE = FP16_MAX
#: Chunked (zarr) probe stores: probes per chunk along the probe axis, at
#: most; fewer when one chunk would exceed ZARR_CHUNK_MAX_BYTES uncompressed.
ZARR_CHUNK_PROBES = 256
ZARR_CHUNK_MAX_BYTES = 64 * 2 ** 20
#: Probes per batch when an in-memory set is walked chunk-wise (validation,
#: statistics, saving).
ITER_BATCH_PROBES = 256
#: Format tag and version written into chunked stores' attributes.
PROBESET_FORMAT = "probewarp.probeset"
PROBESET_FORMAT_VERSION = 1

# --- HDR image import / export ----------------------------------------------
#: Sub-samples per output texel (per axis) when resampling images to cubes.
IMPORT_SUPERSAMPLE = 4
#: Image file suffixes the importer reads (lower case).
HDR_SUFFIXES = (".exr", ".hdr")

# --- tonemap of the published metric (DESIGN-NOTES §5) ---------------------
TONEMAP_GAMMA = 2.2

# --- exit codes of the command line ---------------------------------------
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_RUNTIME = 4
