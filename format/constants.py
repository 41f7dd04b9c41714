"""Conventions and tolerances every half of probewarp shares, in one commented place.

Numbers that the baker, the runtime, the shaders and outside readers agree on
(DESIGN-NOTES) live here (trimesh ``constants.py`` style); the baker's own
tunables are in :mod:`probewarp.baker.config`. The GLSL side receives the ones
it needs as generated ``#define`` values (:mod:`probewarp.format.layout`),
never as literals.
"""

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

# --- tonemap of the published metric (DESIGN-NOTES §5) ---------------------
#: ``T(v) = (max(v, 0) / (1 + max(v, 0))) ** (1 / TONEMAP_GAMMA)``.
TONEMAP_GAMMA = 2.2
#: ``T^-1`` clips its argument to ``[0, TONEMAP_Y_MAX]`` (T never reaches 1).
TONEMAP_Y_MAX = 1.0 - 1.0e-7

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
#: Format tag and version written into chunked stores' attributes.
PROBESET_FORMAT = "probewarp.probeset"
PROBESET_FORMAT_VERSION = 1

# --- tetrahedral interpolation of scattered sets (docs/FORMAT.md) ---------------
#: A query is inside a tetrahedron when its smallest barycentric coordinate is
#: at least ``-TET_INSIDE_EPS`` (float32 GPUs resolve positions to ~1e-7 of the
#: set's extent; a point this close outside a face gets that tetrahedron's
#: clipped, renormalised weights, which differ from the neighbour's by as little).
TET_INSIDE_EPS = 1.0e-5
#: A tetrahedron whose |det| is below this fraction of the product of its edge
#: lengths is flat (a sliver of cospherical points) and never holds a query.
TET_FLAT_REL = 1.0e-9

# --- sparse grids (docs/FORMAT.md "Decoding") -------------------------------------
#: The ``interpolation`` of sparse grids baked since format version 4: an
#: absent corner passes its trilinear weight to the present lattice points
#: among its 6 axis neighbours (in proportion to 1 / step^2 of their axis), so
#: a query on a missing lattice point blends its neighbours symmetrically and
#: the weights stay continuous. Older sparse archives say
#: ``trilinear-present-corners`` (absent corners dropped) and keep that rule.
GRID_FILL_RULE = "trilinear-axis-fill"
#: Most probes one position's grid stencil names with the fill: 8 corners and
#: 3 outside axis neighbours of each (GLSL PW_CODE_CORNERS for such archives).
GRID_FILL_STENCIL = 32
