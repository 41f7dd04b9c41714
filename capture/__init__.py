"""probewarp.capture: render HDR probe sets from the built-in scene or OBJ/glTF meshes (extra: capture)."""
