"""GLSL sources shipped as package data; see :mod:`probewarp.runtime.shaders` for the loader."""
