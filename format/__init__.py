"""probewarp.format: the archive, spatial hash, texel formats, grid and GPU layout both halves read (numpy + lz4 only)."""
