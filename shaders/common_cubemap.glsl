// common_cubemap.glsl -- the cubemap convention of DESIGN-NOTES §1 in GLSL.
//
// Twin of probewarp/baker/cubemap.py: the face constants are its MAJOR,
// U_AXIS and V_AXIS, face order OpenGL's (+X -X +Y -Y +Z -Z = 0..5), and a
// cubemap (6, R, R, C) has row t, column s, texel (f, t, s) looking along
//     MAJOR[f] + sc * U_AXIS[f] + tc * V_AXIS[f],
//     sc = 2 (s + 0.5) / R - 1,  tc = 2 (t + 0.5) / R - 1.
// That is exactly what texture(samplerCube*, dir) reads when the array is
// uploaded as is (probewarp.runtime.cubearray.CubemapArray), so the hardware does
// direction -> texel; these functions are for compute passes that walk
// texels (bakes, metrics, parity tests).
//
// Included by stages through the loader, probewarp.runtime.shaders (each file
// once per stage); no #version here, no defines.

// Face indices (layer-face index within one cubemap; depth 6 * layer + face).
const int PW_FACE_POS_X = 0;
const int PW_FACE_NEG_X = 1;
const int PW_FACE_POS_Y = 2;
const int PW_FACE_NEG_Y = 3;
const int PW_FACE_POS_Z = 4;
const int PW_FACE_NEG_Z = 5;

// Major axis of each face: baker/cubemap.py MAJOR.
const vec3 PW_MAJOR[6] = vec3[6](
    vec3( 1, 0, 0), vec3(-1, 0, 0), vec3(0, 1, 0),
    vec3( 0,-1, 0), vec3( 0, 0, 1), vec3(0, 0,-1));
// Direction in which the column coordinate sc grows: baker/cubemap.py U_AXIS.
const vec3 PW_U_AXIS[6] = vec3[6](
    vec3( 0, 0,-1), vec3( 0, 0, 1), vec3(1, 0, 0),
    vec3( 1, 0, 0), vec3( 1, 0, 0), vec3(-1, 0, 0));
// Direction in which the row coordinate tc grows: baker/cubemap.py V_AXIS.
const vec3 PW_V_AXIS[6] = vec3[6](
    vec3( 0,-1, 0), vec3( 0,-1, 0), vec3(0, 0, 1),
    vec3( 0, 0,-1), vec3( 0,-1, 0), vec3(0,-1, 0));

// Unit direction through texel position st_texel = (s, t) of face `face` on
// an R x R face. Texel k's centre is at k (the function adds the 0.5), so
// integer st_texel gives texel centres and (-0.5, -0.5) the face's corner.
// Twin of baker/cubemap.py texel_directions (texel -> direction); its inverse
// is pw_direction_to_face_st (and the sampler itself).
vec3 pw_texel_direction(int face, vec2 st_texel, int R)
{
    vec2 c = 2.0 * (st_texel + 0.5) / float(R) - 1.0;   // (sc, tc)
    return normalize(PW_MAJOR[face] + c.x * PW_U_AXIS[face] + c.y * PW_V_AXIS[face]);
}

// Face a nonzero direction hits and where: returns the face index and writes
// st = (s, t) in [0, 1] (GL's Table 8.19 coordinates; multiply by R and
// subtract 0.5 for texel units). Ties prefer X, then Y, then Z.
// Twin of baker/cubemap.py direction_to_face_st / _face_of; inverse of
// pw_texel_direction.
int pw_direction_to_face_st(vec3 d, out vec2 st)
{
    vec3 a = abs(d);
    int face;
    if (a.x >= a.y && a.x >= a.z)
        face = d.x >= 0.0 ? PW_FACE_POS_X : PW_FACE_NEG_X;
    else if (a.y >= a.z)
        face = d.y >= 0.0 ? PW_FACE_POS_Y : PW_FACE_NEG_Y;
    else
        face = d.z >= 0.0 ? PW_FACE_POS_Z : PW_FACE_NEG_Z;
    float ma = abs(dot(d, PW_MAJOR[face]));
    st = 0.5 * (vec2(dot(d, PW_U_AXIS[face]), dot(d, PW_V_AXIS[face])) / ma + 1.0);
    return face;
}

// Solid angle of texel (s, t) (integer texel indices; same for every face):
// (2/R)^2 / (1 + sc^2 + tc^2)^(3/2). Twin of baker/cubemap.py
// texel_solid_angles (DESIGN-NOTES §1; the §5 metric weights normalise it).
float pw_texel_solid_angle(vec2 st_texel, int R)
{
    vec2 c = 2.0 * (st_texel + 0.5) / float(R) - 1.0;
    float r2 = 1.0 + dot(c, c);
    float w = 2.0 / float(R);
    return w * w / (r2 * sqrt(r2));
}
