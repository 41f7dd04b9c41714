"""What every benchmark JSON records about its run: the benchmark's name, the
commit measured, the machine and the parameters (the command's options
without its output and work folders); :func:`write` puts it in front of a
benchmark's results and writes the JSON."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def header(benchmark: str, args, skip=("out", "work", "name")) -> dict:
    """``{benchmark, commit, machine, parameters}`` for ``argparse`` ``args``."""
    commit = subprocess.run(["git", "log", "-1", "--format=%h"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    return {"benchmark": benchmark, "commit": commit,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "parameters": {k: v for k, v in vars(args).items() if k not in skip}}


def write(out_dir, name: str, benchmark: str, args, **results) -> Path:
    """``OUT_DIR/NAME.json`` = :func:`header` then ``results`` (written
    atomically, the folder made if needed); prints and returns the path."""
    from probewarp.baker.report import write_json
    path = Path(out_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {**header(benchmark, args), **results})
    print(f"wrote {path}")
    return path
