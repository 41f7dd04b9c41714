// common_probewarp.glsl -- decode a probewarp field at any position, in GLSL.
//
// The GPU twin of probewarp/baker/decoder.py Decoder (docs/FORMAT.md,
// "Decoding"; DESIGN-NOTES §3, §4). Include it in any stage of a GL 4.5
// program through probewarp.runtime.shaders (or paste it after your own
// #version 450 line) and let probewarp.runtime.streamer.Streamer.bind()
// provide the buffers, textures and uniforms below.
//
// Functions a host renderer calls:
//   vec4    pw_decode(vec3 x, vec3 d, float lod)
//             Linear radiance arriving at world position x from unit
//             direction d (rgb), and coverage (a): 1 when at least one
//             probe around x is resident, else 0 with rgb = 0 (fall back to
//             your own ambient). lod: prototype mip level, see pw_lod_for.
//   PwStencil pw_find_probes(vec3 x)
//             The probes blended at x that exist and are resident, with their
//             renormalised weights, in fixed slots (PW_CODE_CORNERS of them:
//             the 8 grid corners; 32 with the sparse grids' fill; 4 for
//             scattered sets).
//   PwCode  pw_code_at(vec3 x)
//             Those probes' codes blended into one list of (prototype layer,
//             weight); pw_code_merge() folds repeated prototypes. Compute it
//             once where x is uniform (a cubemap decode, a camera at x) and
//             evaluate many directions with pw_radiance(code, x, d, lod).
//   vec3    pw_blend_term(int layer, float w, vec3 x, vec3 d, float lod)
//             One code entry's term; for passes that store codes themselves
//             (code_at.cs writes one per position, decode_cubemap.cs and
//             field_view.fs sum the terms, then pw_from_domain).
//   vec3    pw_warp_direction(vec3 x, vec3 d, PwSphere sphere)
//             DESIGN-NOTES §3: where the ray x + t d leaves a prototype's
//             sphere, as a direction from its centre (not normalised).
//   float   pw_lod_for(float texel_angle)
//             Mip level whose footprint matches a requested angular texel
//             size (radians), e.g. pw_lod_for(PW_HALF_PI / R) for an R x R
//             cubemap face.
//
// Rules (identical in the CPU reference decoder):
// - Corners: the query is clamped into the grid box to choose the 8 lattice
//   points around it and their trilinear weights; every prototype is still
//   warped to the true position (DESIGN-NOTES §4).
// - Scattered sets (PW_SCATTERED 1; CPU twin probewarp.format.tetindex.lookup):
//   the query is clamped into the probes' bounding box; its cell of the
//   archive's tetrahedral index lists the simplices that can answer it; the
//   first tetrahedron whose smallest barycentric coordinate is >= -
//   PW_TET_INSIDE_EPS gives its 4 probes (weights clipped at 0, renormalised);
//   else the closest other simplex (hull triangle outside the hull; triangle,
//   segment or point of a flat set) gives the barycentric weights of the
//   closest point. Up to 4 probes; absent pages dropped as for grids.
// - Sparse grids (PW_GRID_FILL 1, meta trilinear-axis-fill): a corner
//   without a probe passes its trilinear weight to the present lattice points
//   among its 6 axis neighbours, in proportion to 1 / step^2 of their axis
//   (earlier sparse archives, PW_GRID_FILL 0: it is dropped).
// - A probe whose page is not resident (Streamer budget; page slot
//   PW_PAGE_ABSENT) is dropped and the remaining weights renormalised; if
//   they sum to 0 the remaining probes share equally; if none remains,
//   coverage is 0.
// - Warp misses (only from outside a sphere) clamp the discriminant at 0:
//   the ray's point of closest approach (docs/FORMAT.md "closest-approach").
//   A sphere whose flags have PW_SPHERE_FLAG_NO_PARALLAX is infinitely far
//   (no parallax: the warp returns d); no radius value is a sentinel.
// - Tonemap-domain archives blend the stored T(v) values and map the blend
//   back with T^-1(y) = u / (1 - u), u = clamp(y, 0, PW_TONEMAP_Y_MAX) ^
//   PW_TONEMAP_GAMMA (format/constants.py). The streamer sets
//   PW_TONEMAP_Y_MAX per archive to T(meta radiance_max), the brightest input
//   texel (format.archive.blend_max; docs/FORMAT.md), so no decode is
//   brighter than any probe was.
//
// GPU layout: every binding point, texture unit, bit field, record and
// shared constant below comes from pw_layout.glsl, GENERATED from
// probewarp/format/layout.py (numpy dtypes with the same field names; the
// host packs with its pack_* functions; tests/test_layout.py checks the
// driver's std430 offsets against the dtypes). Override any of them with
// the loader's defines (Streamer.defines passes layout.glsl_defines()).
//
// Resources:
//   SSBO PW_BINDING_HASH    PwHashEntry pw_hash_table[]  (key, record),
//                           record = page << PW_RECORD_PAGE_SHIFT | local
//                           (local = record & PW_RECORD_LOCAL_MASK),
//                           format/spatialhash.py; empty rows key PW_EMPTY
//   SSBO PW_BINDING_PAGES   int pw_page_slot[]    page -> slot, PW_PAGE_ABSENT
//   SSBO PW_BINDING_CODES   uint pw_codes[]       (slot * pw_page_probes +
//                           local) * PW_N_TAPS + k: prototype index in the
//                           low bits (& PW_CODE_INDEX_MASK), weight byte at
//                           PW_CODE_WEIGHT_SHIFT, weight = byte *
//                           PW_CODE_WEIGHT_SCALE (layout.pack_codes)
//   SSBO PW_BINDING_SPHERES PwSphere pw_spheres[] slot * pw_slot_prototypes +
//                           m: centre, radius, flags (layout.pack_spheres)
//   samplerCubeArray pw_prototypes[PW_N_ARRAYS] on units PW_UNIT_PROTOTYPES..
//                           slot s lives in array s / pw_pages_per_array at
//                           layers (s % pw_pages_per_array) * pw_slot_prototypes;
//                           levels 0..pw_max_lod are the archive's mip chain
//   uniforms (layout.UNIFORMS, set by Streamer.bind):
//            pw_grid_lo, pw_grid_step, pw_grid_shape, pw_hash_mask,
//            pw_hash_max_probe, pw_page_probes, pw_slot_prototypes,
//            pw_pages_per_array, pw_prototype_res, pw_max_lod
//   Scattered archives (PW_SCATTERED 1) instead of the hash and lattice
//   (layout.SCATTERED_UNIFORMS; format/tetindex.py):
//   SSBO PW_BINDING_PROBES    PwProbe pw_probes[]       position, record per probe id
//   SSBO PW_BINDING_SIMPLICES PwSimplex pw_simplices[]  up to 4 probe ids (PW_SIMPLEX_NONE unused)
//   SSBO PW_BINDING_CELLS     uint pw_cells[]  offsets (cell c: pw_cells[c] .. pw_cells[c+1]),
//                             then simplex ids
//            pw_cell_lo, pw_cell_hi (the probes' bounding box), pw_cell_scale
//            (cells per unit, 0 on flat axes), pw_cell_shape, pw_cell_max_items
//   Passes decoding at listed positions (code_at.cs, decode_cubemap.cs,
//   field_view.fs) use PwPosition at PW_BINDING_POSITIONS and PwCodeRecord
//   (PW_MAX_CODE entries) at PW_BINDING_CODE_RECORDS.
//
// Requires GL_TEXTURE_CUBE_MAP_SEAMLESS (Streamer enables it).

#ifndef PW_DOMAIN_TONEMAP
#define PW_DOMAIN_TONEMAP 1    // 1: archive domain "tonemap"; 0: "linear"
#endif
#ifndef PW_N_ARRAYS
#define PW_N_ARRAYS 1          // cube-map arrays holding the resident prototypes (<= PW_MAX_ARRAYS)
#endif

#ifndef PW_SCATTERED
#define PW_SCATTERED 0         // 1: a scattered archive (tetrahedral index instead of the hash)
#endif
#ifndef PW_GRID_FILL
#define PW_GRID_FILL 0         // 1: a sparse grid of the rule trilinear-axis-fill (Streamer.defines)
#endif

#include "pw_layout.glsl"

const float PW_HALF_PI = 1.5707963267948966;
const float PW_FLT_MAX = 3.402823466e38;

#if PW_SCATTERED
layout(std430, binding = PW_BINDING_PROBES) readonly buffer PwProbes { PwProbe pw_probes[]; };
layout(std430, binding = PW_BINDING_SIMPLICES) readonly buffer PwSimplices { PwSimplex pw_simplices[]; };
layout(std430, binding = PW_BINDING_CELLS) readonly buffer PwCells { uint pw_cells[]; };
#else
layout(std430, binding = PW_BINDING_HASH) readonly buffer PwHash { PwHashEntry pw_hash_table[]; };
#endif
layout(std430, binding = PW_BINDING_PAGES) readonly buffer PwPages { int pw_page_slot[]; };
layout(std430, binding = PW_BINDING_CODES) readonly buffer PwCodes { uint pw_codes[]; };
layout(std430, binding = PW_BINDING_SPHERES) readonly buffer PwSpheres { PwSphere pw_spheres[]; };
layout(binding = PW_UNIT_PROTOTYPES) uniform samplerCubeArray pw_prototypes[PW_N_ARRAYS];

#if PW_SCATTERED
uniform vec3 pw_cell_lo;          // the probes' bounding box (the clamp box)
uniform vec3 pw_cell_hi;
uniform vec3 pw_cell_scale;       // cells per unit on each axis (0 on flat axes)
uniform ivec3 pw_cell_shape;      // cells per axis
uniform int pw_cell_max_items;    // longest cell list (loop bound)
#else
uniform vec3 pw_grid_lo;          // first lattice point
uniform vec3 pw_grid_step;        // lattice spacing (1 on axes with one point)
uniform ivec3 pw_grid_shape;      // lattice points per axis
uniform uint pw_hash_mask;        // capacity - 1
uniform int pw_hash_max_probe;    // longest probe sequence of the table
#endif
uniform int pw_page_probes;       // code stride of a slot (probes)
uniform int pw_slot_prototypes;   // prototype stride of a slot (layers)
uniform int pw_pages_per_array;   // slots per cube-map array
uniform int pw_prototype_res;     // Rp, face size of level 0
uniform float pw_max_lod;         // last mip level allocated

// Fixed slots (no dynamically indexed writes: llvmpipe compiled the 32-slot
// form with them in minutes): entry c is in use when slot[c] != PW_PAGE_ABSENT.
// Grids: corner c in entry c, the fill's outside neighbour (c, axis) in entry
// 8 + 3 c + axis; scattered sets: the simplex's corners in entries 0..3.
struct PwStencil {
    int n;                          // entries in use (0..PW_CODE_CORNERS)
    int slot[PW_CODE_CORNERS];      // resident slot of the probe's page, PW_PAGE_ABSENT: unused
    int local[PW_CODE_CORNERS];     // probe index within its page
    float w[PW_CODE_CORNERS];       // renormalised weights (sum 1 when n > 0; 0 when unused)
};

struct PwCode {
    int n;                      // entries: always PW_MAX_CODE (fixed slots c * PW_N_TAPS + k)
    int layer[PW_MAX_CODE];     // global prototype layer: slot * pw_slot_prototypes + m
    float w[PW_MAX_CODE];       // blend weight (probe weight * code weight), 0: unused
};

// Set entry i of a stencil: the probe of record rec (PW_EMPTY: none) with
// weight w; a probe whose page is not resident leaves the entry unused.
void pw_stencil_set(inout PwStencil st, int i, uint rec, float w)
{
    int slot = rec == PW_EMPTY ? PW_PAGE_ABSENT : pw_page_slot[int(rec >> PW_RECORD_PAGE_SHIFT)];
    st.slot[i] = slot;
    st.local[i] = int(rec & PW_RECORD_LOCAL_MASK);
    st.w[i] = slot == PW_PAGE_ABSENT ? 0.0 : w;
}

// The shared fallback: weights renormalised over the entries in use; if they
// sum to 0, the entries in use share equally; n counts them.
void pw_stencil_finish(inout PwStencil st)
{
    float total = 0.0;
    int n = 0;
    for (int c = 0; c < PW_CODE_CORNERS; ++c) {
        total += st.w[c];
        n += st.slot[c] != PW_PAGE_ABSENT ? 1 : 0;
    }
    for (int c = 0; c < PW_CODE_CORNERS; ++c)
        st.w[c] = st.slot[c] == PW_PAGE_ABSENT ? 0.0 : (total > 0.0 ? st.w[c] / total : 1.0 / float(n));
    st.n = n;
}


#if !PW_SCATTERED
// MurmurHash3 fmix32; twin of probewarp.format.spatialhash.fmix32.
uint pw_hash(uint key)
{
    key ^= key >> 16;
    key *= 0x85EBCA6Bu;
    key ^= key >> 13;
    key *= 0xC2B2AE35u;
    key ^= key >> 16;
    return key;
}

// Linear lattice id (i * ny + j) * nz + k; PW_EMPTY outside the lattice.
// Twin of probewarp.format.grid.Grid.keys.
uint pw_lattice_key(ivec3 c)
{
    if (any(lessThan(c, ivec3(0))) || any(greaterThanEqual(c, pw_grid_shape)))
        return PW_EMPTY;
    return uint((c.x * pw_grid_shape.y + c.y) * pw_grid_shape.z + c.z);
}

// Record (page << PW_RECORD_PAGE_SHIFT | local) of a lattice key, PW_EMPTY if no probe there.
// Twin of probewarp.format.spatialhash.lookup.
uint pw_find_record(uint key)
{
    if (key == PW_EMPTY)
        return PW_EMPTY;
    uint slot = pw_hash(key) & pw_hash_mask;
    for (int i = 0; i < pw_hash_max_probe; ++i) {
        PwHashEntry e = pw_hash_table[slot];
        if (e.key == key)
            return e.record;
        if (e.key == PW_EMPTY)
            return PW_EMPTY;
        slot = (slot + 1u) & pw_hash_mask;
    }
    return PW_EMPTY;
}

// CPU twin: probewarp.baker.decoder.Decoder.pw_find_probes (corners: Grid.corners;
// the fill: Decoder._axis_fill).
PwStencil pw_find_probes(vec3 x)
{
    vec3 shape_m1 = vec3(pw_grid_shape - 1);
    vec3 u = clamp((x - pw_grid_lo) / pw_grid_step, vec3(0.0), shape_m1);
    ivec3 i0 = min(ivec3(floor(u)), max(pw_grid_shape - 2, ivec3(0)));
    vec3 f = u - vec3(i0);
    uint rec[8];
    float wc[8];
    float acc[8];
    for (int c = 0; c < 8; ++c) {
        ivec3 o = ivec3((c >> 2) & 1, (c >> 1) & 1, c & 1);
        rec[c] = pw_find_record(pw_lattice_key(min(i0 + o, pw_grid_shape - 1)));
        vec3 t = mix(vec3(1.0) - f, f, vec3(o));
        wc[c] = t.x * t.y * t.z;
        acc[c] = rec[c] == PW_EMPTY ? 0.0 : wc[c];
    }
#if PW_GRID_FILL
    // An absent corner passes its weight to its present axis neighbours (1 / step^2
    // of their axis). The outside neighbours' lookups run in one loop of run-time
    // length (one pw_find_record call site: llvmpipe took minutes to compile the
    // unrolled form).
    uint orec[24];
    float ow[24];
    int todo[24];
    int n_todo = 0;
    for (int e = 0; e < 24; ++e) {
        orec[e] = PW_EMPTY;
        ow[e] = 0.0;
    }
    for (int c = 0; c < 8; ++c)
        if (rec[c] == PW_EMPTY && wc[c] > 0.0)
            for (int a = 0; a < 3; ++a)
                if (pw_grid_shape[a] >= 2)
                    todo[n_todo++] = 3 * c + a;
    for (int k = 0; k < n_todo; ++k) {
        int e = todo[k];
        int c = e / 3, a = e - 3 * (e / 3);
        ivec3 o = ivec3((c >> 2) & 1, (c >> 1) & 1, c & 1);
        ivec3 unit = ivec3(equal(ivec3(a), ivec3(0, 1, 2)));
        ivec3 q = i0 + o + unit * (2 * o - 1);            // leaves the cell along axis a
        if (all(greaterThanEqual(q, ivec3(0))) && all(lessThan(q, pw_grid_shape)))
            orec[e] = pw_find_record(pw_lattice_key(q));
    }
    vec3 inv2 = 1.0 / (pw_grid_step * pw_grid_step);
    for (int c = 0; c < 8; ++c) {
        if (rec[c] != PW_EMPTY || !(wc[c] > 0.0))
            continue;
        vec3 share_in = vec3(0.0), share_out = vec3(0.0);
        for (int a = 0; a < 3; ++a) {
            if (pw_grid_shape[a] < 2)
                continue;
            share_in[a] = rec[c ^ (4 >> a)] != PW_EMPTY ? inv2[a] : 0.0;
            share_out[a] = orec[3 * c + a] != PW_EMPTY ? inv2[a] : 0.0;
        }
        float tot = dot(share_in + share_out, vec3(1.0));
        if (!(tot > 0.0))
            continue;
        float give = wc[c] / tot;
        for (int a = 0; a < 3; ++a) {
            acc[c ^ (4 >> a)] += give * share_in[a];
            ow[3 * c + a] = give * share_out[a];
        }
    }
#endif
    PwStencil st;
    st.n = 0;
    for (int c = 0; c < PW_CODE_CORNERS; ++c)
        pw_stencil_set(st, c, PW_EMPTY, 0.0);
    for (int c = 0; c < 8; ++c)
        pw_stencil_set(st, c, rec[c], acc[c]);
#if PW_GRID_FILL
    for (int e = 0; e < 24; ++e)
        pw_stencil_set(st, 8 + e, ow[e] > 0.0 ? orec[e] : PW_EMPTY, ow[e]);
#endif
    pw_stencil_finish(st);
    return st;
}
#else
// Barycentric coordinates of x in tetrahedron s; false when it is flat.
// CPU twin: probewarp.format.tetindex.tet_barycentric.
bool pw_tet_bary(PwSimplex s, vec3 x, out vec4 lam)
{
    vec3 a = pw_probes[s.probes[0]].xyz;
    vec3 e1 = pw_probes[s.probes[1]].xyz - a;
    vec3 e2 = pw_probes[s.probes[2]].xyz - a;
    vec3 e3 = pw_probes[s.probes[3]].xyz - a;
    vec3 p = x - a;
    vec3 c23 = cross(e2, e3);
    float det = dot(e1, c23);
    lam = vec4(0.0);
    if (!(abs(det) > PW_TET_FLAT_REL * length(e1) * length(e2) * length(e3)))
        return false;
    float l1 = dot(p, c23) / det;
    float l2 = dot(e1, cross(p, e3)) / det;
    float l3 = dot(e1, cross(e2, p)) / det;
    lam = vec4(1.0 - l1 - l2 - l3, l1, l2, l3);
    return true;
}

// Squared distance from x to a point, segment or triangle (k corners) and the
// barycentric weights of its closest point (Ericson, RTCD 5.1.5).
// CPU twin: probewarp.format.tetindex.closest_points.
float pw_closest(PwSimplex s, int k, vec3 x, out vec4 w)
{
    w = vec4(1.0, 0.0, 0.0, 0.0);
    vec3 a = pw_probes[s.probes[0]].xyz;
    if (k == 1)
        return dot(x - a, x - a);
    vec3 b = pw_probes[s.probes[1]].xyz;
    vec3 ab = b - a;
    if (k == 2) {
        float den = dot(ab, ab);
        float t = den > 0.0 ? dot(x - a, ab) / den : 0.0;
        t = clamp(t, 0.0, 1.0);
        w = vec4(1.0 - t, t, 0.0, 0.0);
        vec3 d = a + t * ab - x;
        return dot(d, d);
    }
    vec3 c = pw_probes[s.probes[2]].xyz;
    vec3 ac = c - a;
    vec3 ap = x - a, bp = x - b, cp = x - c;
    float d1 = dot(ab, ap), d2 = dot(ac, ap), d3 = dot(ab, bp);
    float d4 = dot(ac, bp), d5 = dot(ab, cp), d6 = dot(ac, cp);
    float va = d3 * d6 - d5 * d4, vb = d5 * d2 - d1 * d6, vc = d1 * d4 - d3 * d2;
    float u, v;
    if (d1 <= 0.0 && d2 <= 0.0) { u = 0.0; v = 0.0; }
    else if (d3 >= 0.0 && d4 <= d3) { u = 1.0; v = 0.0; }
    else if (d6 >= 0.0 && d5 <= d6) { u = 0.0; v = 1.0; }
    else if (vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0) { u = d1 / (d1 - d3); v = 0.0; }
    else if (vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0) { u = 0.0; v = d2 / (d2 - d6); }
    else if (va <= 0.0 && d4 - d3 >= 0.0 && d5 - d6 >= 0.0) {
        float t = (d4 - d3) / ((d4 - d3) + (d5 - d6));
        u = 1.0 - t; v = t;
    } else {
        float den = va + vb + vc;
        u = vb / den; v = vc / den;
    }
    w = vec4(1.0 - u - v, u, v, 0.0);
    vec3 d = ap - u * ab - v * ac;
    return dot(d, d);
}

int pw_simplex_corners(PwSimplex s)
{
    int k = 0;
    while (k < 4 && s.probes[k] != PW_SIMPLEX_NONE)
        ++k;
    return k;
}

// The tetrahedral rule (see Rules above). CPU twin:
// probewarp.baker.decoder.Decoder.pw_find_probes (format.tetindex.lookup).
PwStencil pw_find_probes(vec3 x)
{
    vec3 xc = clamp(x, pw_cell_lo, pw_cell_hi);
    ivec3 ci = clamp(ivec3(floor((xc - pw_cell_lo) * pw_cell_scale)), ivec3(0), pw_cell_shape - 1);
    int c = (ci.x * pw_cell_shape.y + ci.y) * pw_cell_shape.z + ci.z;
    int first = int(pw_cells[c]);
    int last = min(int(pw_cells[c + 1]), first + pw_cell_max_items);
    float best = PW_FLT_MAX;
    int bk = -1;
    vec4 bw = vec4(0.0);
    float fb = -PW_FLT_MAX;
    int fk = -1;
    vec4 fw = vec4(0.0);
    int found = -1;
    vec4 lam;
    for (int it = first; it < last; ++it) {
        int e = int(pw_cells[it]);
        PwSimplex s = pw_simplices[e];
        int k = pw_simplex_corners(s);
        if (k == 4) {
            if (!pw_tet_bary(s, xc, lam))
                continue;
            float m = min(min(lam.x, lam.y), min(lam.z, lam.w));
            if (m >= -PW_TET_INSIDE_EPS) {
                found = e;
                lam = max(lam, vec4(0.0));
                lam /= dot(lam, vec4(1.0));
                break;
            }
            if (m > fb) { fb = m; fk = e; fw = lam; }
        } else {
            vec4 tw;
            float d2 = pw_closest(s, k, xc, tw);
            if (d2 < best) { best = d2; bk = e; bw = tw; }
        }
    }
    int e = found;
    vec4 w = lam;
    if (e < 0 && bk >= 0) { e = bk; w = bw; }
    else if (e < 0 && fk >= 0) { e = fk; w = max(fw, vec4(0.0)); w /= dot(w, vec4(1.0)); }
    PwStencil st;
    st.n = 0;
    for (int c = 0; c < PW_CODE_CORNERS; ++c)
        pw_stencil_set(st, c, PW_EMPTY, 0.0);
    if (e >= 0) {
        PwSimplex s = pw_simplices[e];
        int k = pw_simplex_corners(s);
        for (int j = 0; j < 4; ++j)
            pw_stencil_set(st, j, j < k ? pw_probes[s.probes[j]].record : PW_EMPTY, w[j]);
    }
    pw_stencil_finish(st);
    return st;
}
#endif

// CPU twin: Decoder.pw_code_at (fixed width, zero weights kept, no merge):
// entry c * PW_N_TAPS + k is tap k of stencil entry c (weight 0 when unused).
PwCode pw_code_at(vec3 x)
{
    PwStencil st = pw_find_probes(x);
    PwCode code;
    code.n = PW_MAX_CODE;
    for (int c = 0; c < PW_CODE_CORNERS; ++c) {
        bool on = st.slot[c] != PW_PAGE_ABSENT;
        int base = on ? (st.slot[c] * pw_page_probes + st.local[c]) * PW_N_TAPS : 0;
        for (int k = 0; k < PW_N_TAPS; ++k) {
            uint e = on ? pw_codes[base + k] : 0u;
            code.layer[c * PW_N_TAPS + k] = on ? st.slot[c] * pw_slot_prototypes + int(e & PW_CODE_INDEX_MASK) : 0;
            code.w[c * PW_N_TAPS + k] = on ? float(e >> PW_CODE_WEIGHT_SHIFT) * PW_CODE_WEIGHT_SCALE * st.w[c] : 0.0;
        }
    }
    return code;
}

// Fold entries naming the same prototype (neighbouring probes share most of
// theirs) and drop unused ones: fewer warps and samples per direction, same
// blend up to rounding. Its writes are dynamically indexed: heavy to compile
// for large PW_MAX_CODE (code_at.cs merges straight into its SSBO record).
void pw_code_merge(inout PwCode code)
{
    int n = 0;
    for (int i = 0; i < code.n; ++i) {
        if (!(code.w[i] > 0.0))
            continue;
        int j = 0;
        while (j < n && code.layer[j] != code.layer[i])
            ++j;
        if (j < n) {
            code.w[j] += code.w[i];
        } else {
            code.layer[n] = code.layer[i];
            code.w[n] = code.w[i];
            ++n;
        }
    }
    code.n = n;
}

// CPU twin: probewarp.baker.decoder.pw_warp_direction (after baker/warp.py warp_directions);
// the sphere as layout.pack_spheres packs it.
vec3 pw_warp_direction(vec3 x, vec3 d, PwSphere sphere)
{
    if ((sphere.flags & PW_SPHERE_FLAG_NO_PARALLAX) != 0u)
        return d;
    vec3 o = x - sphere.centre;
    float b = dot(o, d);
    float q2 = dot(o, o) - sphere.radius * sphere.radius;
    float t = -b + sqrt(max(b * b - q2, 0.0));
    return o + t * d;
}

float pw_lod_for(float texel_angle)
{
    float proto_angle = PW_HALF_PI / float(pw_prototype_res);
    return clamp(log2(max(texel_angle / proto_angle, 1.0)), 0.0, pw_max_lod);
}

// One prototype, filtered (seamless, trilinear between levels).
vec3 pw_sample_prototype(int layer, vec3 s, float lod)
{
    int slot = layer / pw_slot_prototypes;
    int a = slot / pw_pages_per_array;
    float l = float(layer - a * pw_pages_per_array * pw_slot_prototypes);
#if PW_N_ARRAYS == 1
    return textureLod(pw_prototypes[0], vec4(s, l), lod).rgb;
#else
    // constant indices only: sampler arrays need dynamically uniform indices
    switch (a) {
    default: return textureLod(pw_prototypes[0], vec4(s, l), lod).rgb;
#if PW_N_ARRAYS > 1
    case 1: return textureLod(pw_prototypes[1], vec4(s, l), lod).rgb;
#endif
#if PW_N_ARRAYS > 2
    case 2: return textureLod(pw_prototypes[2], vec4(s, l), lod).rgb;
#endif
#if PW_N_ARRAYS > 3
    case 3: return textureLod(pw_prototypes[3], vec4(s, l), lod).rgb;
#endif
#if PW_N_ARRAYS > 4
    case 4: return textureLod(pw_prototypes[4], vec4(s, l), lod).rgb;
#endif
#if PW_N_ARRAYS > 5
    case 5: return textureLod(pw_prototypes[5], vec4(s, l), lod).rgb;
#endif
#if PW_N_ARRAYS > 6
    case 6: return textureLod(pw_prototypes[6], vec4(s, l), lod).rgb;
#endif
#if PW_N_ARRAYS > 7
    case 7: return textureLod(pw_prototypes[7], vec4(s, l), lod).rgb;
#endif
    }
#endif
}

// Blend-domain value -> linear radiance (see the rules above).
// CPU twin: probewarp.baker.decoder.pw_from_domain.
vec3 pw_from_domain(vec3 y)
{
#if PW_DOMAIN_TONEMAP
    vec3 u = pow(clamp(y, vec3(0.0), vec3(PW_TONEMAP_Y_MAX)), vec3(PW_TONEMAP_GAMMA));
    return u / (1.0 - u);
#else
    return max(y, vec3(0.0));
#endif
}

// One code entry's contribution, in the blend domain: w * J_layer(warp(x, d)).
// Sum them and map the sum with pw_from_domain (what pw_radiance does);
// passes that keep codes in their own buffers loop over this.
vec3 pw_blend_term(int layer, float w, vec3 x, vec3 d, float lod)
{
    return w * pw_sample_prototype(layer, pw_warp_direction(x, d, pw_spheres[layer]), lod);
}

// CPU twin: Decoder.pw_radiance (rgb; coverage = any weight > 0).
vec4 pw_radiance(PwCode code, vec3 x, vec3 d, float lod)
{
    vec3 y = vec3(0.0);
    bool covered = false;
    for (int i = 0; i < code.n; ++i) {
        if (!(code.w[i] > 0.0))
            continue;
        y += pw_blend_term(code.layer[i], code.w[i], x, d, lod);
        covered = true;
    }
    return vec4(pw_from_domain(y), covered ? 1.0 : 0.0);
}

// CPU twin: Decoder.pw_decode (level 0).
vec4 pw_decode(vec3 x, vec3 d, float lod)
{
    return pw_radiance(pw_code_at(x), x, d, lod);
}
