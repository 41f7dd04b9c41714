#version 450
// capture.fs -- shading of scene geometry for probe capture.
//
// Lambertian: radiance = albedo * (E_sun/pi * max(n.l, 0) * visibility
//                                  + mix(ambient_ground, ambient_sky, 0.5 + 0.5 n.y)),
// albedo = vertex colour * texture layer (probewarp.capture.scene.Scene),
// visibility from the sun's shadow map (shadow.vs) with PCF. Both sides of a
// triangle are shaded: the normal is flipped towards the probe.
// LIGHTING_UNLIT = 1 outputs the albedo itself (exact colours for tests).

#ifndef LIGHTING_UNLIT
#define LIGHTING_UNLIT 0
#endif
// Shadow-map taps: 1 (one hardware-bilinear compare) or 4 (2 x 2 of them,
// half a texel apart: a 3 x 3 tent).
#ifndef SHADOW_TAPS
#define SHADOW_TAPS 4
#endif

in vec3 v_world;
in vec3 v_normal;
in vec3 v_color;
in vec2 v_uv;
flat in int v_layer;
flat in vec3 v_probe;

layout(binding = 0) uniform sampler2DArray u_albedo;
layout(binding = 1) uniform sampler2DShadow u_shadow;

uniform mat4  u_light;           // world -> shadow-map texture coords [0,1]^3
uniform float u_normal_bias;     // world units along the normal before the lookup
uniform float u_depth_bias;      // in shadow-map depth units
uniform vec2  u_shadow_texel;    // 1 / shadow-map size
uniform vec3  u_sun_dir;         // unit, towards the sun
uniform vec3  u_sun_diffuse;     // E_sun / pi
uniform vec3  u_ambient_sky;     // cosine-weighted sky radiance, normal straight up
uniform vec3  u_ambient_ground;  // the same for a normal straight down

layout(location = 0) out vec4 frag;

float sun_visibility(vec3 p, vec3 n)
{
    vec4 q = u_light * vec4(p + n * u_normal_bias, 1.0);
    if (any(lessThan(q.xy, vec2(0.0))) || any(greaterThan(q.xy, vec2(1.0))) || q.z > 1.0)
        return 1.0;
    float z = q.z - u_depth_bias;
#if SHADOW_TAPS == 4
    vec2 h = 0.5 * u_shadow_texel;
    return 0.25 * (texture(u_shadow, vec3(q.xy + vec2(-h.x, -h.y), z))
                 + texture(u_shadow, vec3(q.xy + vec2( h.x, -h.y), z))
                 + texture(u_shadow, vec3(q.xy + vec2(-h.x,  h.y), z))
                 + texture(u_shadow, vec3(q.xy + vec2( h.x,  h.y), z)));
#else
    return texture(u_shadow, vec3(q.xy, z));
#endif
}

void main()
{
    // layer 0 is plain white: skip the (trilinear) fetch; derivatives are
    // taken outside the branch (v_layer is flat, the branch uniform per triangle)
    vec2 duv_dx = dFdx(v_uv), duv_dy = dFdy(v_uv);
    vec3 albedo = v_color;
    if (v_layer > 0)
        albedo *= textureGrad(u_albedo, vec3(v_uv, float(v_layer)), duv_dx, duv_dy).rgb;
#if LIGHTING_UNLIT
    frag = vec4(albedo, 1.0);
#else
    vec3 n = normalize(v_normal);
    if (dot(n, v_probe - v_world) < 0.0)
        n = -n;
    float ndl = dot(n, u_sun_dir);
    float vis = ndl > 0.0 ? sun_visibility(v_world, n) : 0.0;
    vec3 ambient = mix(u_ambient_ground, u_ambient_sky, 0.5 + 0.5 * n.y);
    frag = vec4(albedo * (u_sun_diffuse * (max(ndl, 0.0) * vis) + ambient), 1.0);
#endif
}
