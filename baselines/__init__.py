"""probewarp.baselines: what users had before (SH, PCA, VQ, neighbour blending), the GL SH decoder, and compare."""
