"""Tolerances shared by several test modules, one commented place (trimesh
``constants.py`` style). A tolerance used by one test only stays next to it,
with its reason; the library's own tolerances live in
:mod:`probewarp.format.constants`.
"""

#: numba kernels (float32 accumulation of float64 warps) against the float64
#: plain-numpy oracle of tests/naive.py, in the blend domain (values in [0, 1]):
#: measured ~1e-6; bilinear weights near a texel edge carry float32 rounding.
ORACLE_ATOL = 1e-5
ORACLE_RTOL = 1e-5

#: A decode compared with the oracle after the inverse tonemap (radiance):
#: dv/dT reaches ~100 for the bright test fields, so ORACLE_ATOL in T becomes
#: ~2e-4 relative in v (measured 4e-5).
DECODE_RADIANCE_RTOL = 2e-4
DECODE_RADIANCE_ATOL = 1e-5

#: GLSL decode against the CPU reference decode, on tonemapped values
#: with prototypes sampled at level 0: float32 vs float64 warps and the GPU's
#: bilinear weights (measured on llvmpipe: < 1e-6). Used by test_runtime_decode,
#: test_streamer and test_cli.
PARITY_TOL = 2e-5

#: ProbeCodec.encode of the training set with the fixed prototypes against the
#: fitted codes, in PSNR dB. Fit's finish re-solves the prototypes after
#: rounding its weights to 8 bits, encode's fresh codes are rounded without
#: that; in the linear domain fit also reweights (IRLS). Measured: +0.3 dB
#: (tonemap), -0.4 dB (linear) on tests/test_prototypes.py's field.
ENCODE_VS_FIT_DB = 0.75
