"""Lifetime boilerplate shared by the runtime's GL-object owners.

:class:`Releasable` makes ``with obj: ...`` call ``obj.release()`` on exit;
:func:`readonly` spells a read-only attribute in one line;
:func:`released_on_error` releases a half-built object when its constructor
fails. Used by :class:`probewarp.runtime.cubearray.CubemapArray` and
:class:`probewarp.baselines.sh_gl.SHGridDecoderGL`.

Notes
-----
No ``__del__``: GL objects are released explicitly, because the context may
be gone by the time Python collects their owner.
"""
from __future__ import annotations

import contextlib


class Releasable:
    """Mixin: a context manager whose exit calls ``self.release()``.

    Subclasses define ``release()`` (idempotent). Exceptions are not
    suppressed.
    """

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def readonly(attr: str, doc: str) -> property:
    """A read-only property returning ``self.<attr>``, documented by ``doc``.

    ``glo = readonly("_glo", "GL texture name (0 once released).")`` stands
    for the four-line ``@property`` that returns ``self._glo``.
    """
    def get(self):
        return getattr(self, attr)
    get.__doc__ = doc
    return property(get, doc=doc)


@contextlib.contextmanager
def released_on_error(obj):
    """Call ``obj.release()`` and re-raise if the block raises an ``Exception``.

    For constructors that acquire several GL objects: ``release()`` must cope
    with the attributes not yet set (``None`` / 0).
    """
    try:
        yield obj
    except Exception:
        obj.release()
        raise
