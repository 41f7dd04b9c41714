#version 450
// capture_sky.fs -- the analytic sky behind the geometry of every tile of the
// capture target. Tile i (column i % u_cols, row i / u_cols, GL rows from the
// bottom) holds face i % 6 (capture.vs); the texel's direction follows
// DESIGN-NOTES §1 from its position inside the tile.
#include "common_cubemap.glsl"
#include "common_sky.glsl"

uniform int u_cols;      // tiles per row
uniform int u_tile;      // tile side in texels (R * supersample)

layout(location = 0) out vec4 frag;

void main()
{
    ivec2 px = ivec2(gl_FragCoord.xy);
    ivec2 tile = px / u_tile;
    int face = (tile.y * u_cols + tile.x) % 6;
    vec2 st = 2.0 * (gl_FragCoord.xy - vec2(tile * u_tile)) / float(u_tile) - 1.0;  // (sc, tc)
    vec3 d = normalize(PW_MAJOR[face] + st.x * PW_U_AXIS[face] + st.y * PW_V_AXIS[face]);
    frag = vec4(sky_radiance(d), 1.0);
}
