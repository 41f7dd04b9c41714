"""probewarp.baker: the offline half (numpy / scipy / numba).

Probe sets on disk, cubemap conventions, metrics and (later) the prototype
learner. Nothing in this package parses arguments or prints; the command line
lives in :mod:`probewarp.cli.main`.
"""
