"""probewarp.runtime: the GL half (moderngl + GLSL through a headless or host context)."""
