// sh_eval.glsl -- real spherical harmonics, bands 0..PW_SH_ORDER (at most 6),
// evaluated "as engines do": straight-line polynomials in the unit direction
// (x, y, z) with precomputed constants; no sin/cos/atan/acos, no loops, no
// branches.
//
// Convention: exactly probewarp/baker/baselines.py real_sh_basis(dirs, order)
// (SphericalHarmonics(order) fits against it), so coefficients fitted by the
// baseline evaluate identically here:
//   - index l*l + l + m for l = 0..L, m = -l..l; PW_SH_COUNT = (L+1)^2
//     (49 at L = 6, the "SH order 6" baseline: 49 x RGB x fp16 = 294 B/probe);
//   - orthonormal on the unit sphere (integral Y_i Y_j dOmega = delta_ij);
//   - theta from +Z, phi = atan2(y, x), no Condon-Shortley phase:
//     Y_l0 = Q_l0(z),  Y_l(+m) = Q_lm(z) Re (x + i y)^m,
//     Y_l(-m) = Q_lm(z) Im (x + i y)^m, with Q_lm = sqrt(2) Nbar_lm P_l^m / sin^m
//     a polynomial in z of degree l - m and parity l - m (written in Horner
//     form in z^2), so band 1 is 0.4886 (y, z, x).
// The direction must be unit length (the polynomials use x^2 + y^2 + z^2 = 1).
//
// Float32 accuracy against real_sh_basis (float64), measured on Mesa
// llvmpipe: within 2.6e-6 of the band's bound sqrt((2l+1)/(4 pi)) (band 6,
// where the expanded polynomials cancel most; bands 0..5 within 8.4e-7);
// tests/test_sh_shader.py asserts 1e-5.
//
// Generated: the block between BEGIN/END GENERATED is the output of
// tests/test_sh_shader.py::glsl_basis_block (run `python
// tests/test_sh_shader.py` to print it; a test checks the two agree). The
// constants come from real_sh_basis's own normalised Legendre recurrence,
// expanded into polynomial coefficients in float64.
//
// Functions:
//   void pw_sh_basis(vec3 d, out float Y[PW_SH_COUNT])   all basis values at d
//   vec3 pw_sh_dot(float Y[PW_SH_COUNT], vec3 c[PW_SH_COUNT])  sum_k Y[k] c[k]
//   vec3 pw_sh_eval(vec3 d, vec3 c[PW_SH_COUNT])          the two in a row
// Decoder twin (CPU): SphericalHarmonics.decode (before its domain mapping).
// Used by sh_decode.cs (probewarp.baselines.sh_gl.SHGridDecoderGL).
//
// Included through probewarp.runtime.shaders (#include "sh_eval.glsl"); no
// #version here. Override PW_SH_ORDER through the loader's defines.

#ifndef PW_SH_EVAL_GLSL
#define PW_SH_EVAL_GLSL

#ifndef PW_SH_ORDER
#define PW_SH_ORDER 6       // highest band L, 0..6 (the baseline's order)
#endif

#if PW_SH_ORDER < 0 || PW_SH_ORDER > 6
#error "sh_eval.glsl: PW_SH_ORDER must be in 0..6"
#endif

#define PW_SH_COUNT ((PW_SH_ORDER + 1) * (PW_SH_ORDER + 1))

// Real SH basis at unit direction d: Y[l*l + l + m] (real_sh_basis's order).
// (c_m, s_m) = (Re, Im) of (x + i y)^m by complex multiplication.
void pw_sh_basis(vec3 d, out float Y[PW_SH_COUNT])
{
    float x = d.x, y = d.y, z = d.z;
    float z2 = z * z;
    float t;
    // BEGIN GENERATED (tests/test_sh_shader.py glsl_basis_block)
    Y[0] = 0.282094792;
#if PW_SH_ORDER >= 1
    float c1 = x, s1 = y;
    Y[2] = 0.488602512 * z;
    Y[1] = 0.488602512 * s1;
    Y[3] = 0.488602512 * c1;
#endif
#if PW_SH_ORDER >= 2
    float c2 = c1 * x - s1 * y, s2 = c1 * y + s1 * x;
    Y[6] = 0.946174696 * z2 - 0.315391565;
    t = 1.09254843 * z;
    Y[5] = t * s1;
    Y[7] = t * c1;
    Y[4] = 0.546274215 * s2;
    Y[8] = 0.546274215 * c2;
#endif
#if PW_SH_ORDER >= 3
    float c3 = c2 * x - s2 * y, s3 = c2 * y + s2 * x;
    Y[12] = z * (1.86588166 * z2 - 1.119529);
    t = 2.285229 * z2 - 0.457045799;
    Y[11] = t * s1;
    Y[13] = t * c1;
    t = 1.44530572 * z;
    Y[10] = t * s2;
    Y[14] = t * c2;
    Y[9] = 0.59004359 * s3;
    Y[15] = 0.59004359 * c3;
#endif
#if PW_SH_ORDER >= 4
    float c4 = c3 * x - s3 * y, s4 = c3 * y + s3 * x;
    Y[20] = (3.70249414 * z2 - 3.17356641) * z2 + 0.317356641;
    t = z * (4.6833258 * z2 - 2.00713963);
    Y[19] = t * s1;
    Y[21] = t * c1;
    t = 3.31161144 * z2 - 0.473087348;
    Y[18] = t * s2;
    Y[22] = t * c2;
    t = 1.77013077 * z;
    Y[17] = t * s3;
    Y[23] = t * c3;
    Y[16] = 0.625835735 * s4;
    Y[24] = 0.625835735 * c4;
#endif
#if PW_SH_ORDER >= 5
    float c5 = c4 * x - s4 * y, s5 = c4 * y + s4 * x;
    Y[30] = z * ((7.36787031 * z2 - 8.18652257) * z2 + 1.75425484);
    t = (9.51187968 * z2 - 6.34125312) * z2 + 0.452946651;
    Y[29] = t * s1;
    Y[31] = t * c1;
    t = z * (7.19030518 * z2 - 2.39676839);
    Y[28] = t * s2;
    Y[32] = t * c2;
    t = 4.40314469 * z2 - 0.489238299;
    Y[27] = t * s3;
    Y[33] = t * c3;
    t = 2.07566231 * z;
    Y[26] = t * s4;
    Y[34] = t * c4;
    Y[25] = 0.656382057 * s5;
    Y[35] = 0.656382057 * c5;
#endif
#if PW_SH_ORDER >= 6
    float c6 = c5 * x - s5 * y, s6 = c5 * y + s5 * x;
    Y[42] = ((14.6844857 * z2 - 20.0242987) * z2 + 6.67476624) * z2 - 0.317846011;
    t = z * ((19.226505 * z2 - 17.4786409) * z2 + 2.91310681);
    Y[41] = t * s1;
    Y[43] = t * c1;
    t = (15.1998868 * z2 - 8.29084734) * z2 + 0.46060263;
    Y[40] = t * s2;
    Y[44] = t * c2;
    t = z * (10.1332579 * z2 - 2.76361578);
    Y[39] = t * s3;
    Y[45] = t * c3;
    t = 5.55021391 * z2 - 0.504564901;
    Y[38] = t * s4;
    Y[46] = t * c4;
    t = 2.36661916 * z;
    Y[37] = t * s5;
    Y[47] = t * c5;
    Y[36] = 0.683184105 * s6;
    Y[48] = 0.683184105 * c6;
#endif
    // END GENERATED
}

// sum_k Y[k] * c[k]: RGB value of one probe's coefficients c (PW_SH_COUNT x RGB).
vec3 pw_sh_dot(float Y[PW_SH_COUNT], vec3 c[PW_SH_COUNT])
{
    vec3 v = vec3(0.0);
    for (int k = 0; k < PW_SH_COUNT; ++k)
        v += Y[k] * c[k];
    return v;
}

// RGB value of coefficients c at unit direction d, in the fit domain (the
// caller applies the baseline's domain mapping, see sh_decode.cs).
vec3 pw_sh_eval(vec3 d, vec3 c[PW_SH_COUNT])
{
    float Y[PW_SH_COUNT];
    pw_sh_basis(d, Y);
    return pw_sh_dot(Y, c);
}

#endif // PW_SH_EVAL_GLSL
