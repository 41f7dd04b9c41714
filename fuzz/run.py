"""Run fuzz campaigns on the readers (``fuzz/targets.py``) and record the results.

    python fuzz/run.py TARGET --cases N [--seed S] [--engine atheris|mutate] [--keep-going]
    python fuzz/run.py --all --cases N [--seed S]

Engines
-------
``atheris`` (the default when it imports): libFuzzer, coverage-guided over
the ``probewarp`` modules (instrumented on import), started from the
target's seed corpus with ``-runs=N -seed=S -timeout=10
-rss_limit_mb=2048``. An uncaught exception is a crash (libFuzzer stops and
writes the input); so are a case running past 10 s and a process over
2 GiB. The campaign runs in a child process (libFuzzer exits the process
when done); this parent parses its log.

``mutate`` (when atheris is not importable, or ``--engine mutate``): a
plain mutation fuzzer without coverage. Each case takes a seed (or an
earlier mutant) and applies 1-4 of: bit flip, random byte, byte insert,
byte range delete, integer field set to a boundary value (u8/u16/u32/u64,
little-endian, at a random aligned offset: 0, 1, 0x7F, 0x80, 0xFF, 0x7FFF,
0xFFFF, 2^31-1, 2^31, 2^32-1, 2^63, 2^64-1), truncation, duplication of a
range. Each case runs under a 10 s alarm and a 2 GiB address-space cap
beyond the start.

``--keep-going`` records every distinct crash (type and innermost
probewarp frame) and goes on instead of stopping at the first.

Output: ``fuzz/results/TARGET.json``: target, engine, cases, seconds,
seed, crashes (kind, message, where, input size after a greedy shrink,
the reproducer's path under ``fuzz/results/crashes/``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CRASHES = RESULTS / "crashes"
sys.path.insert(0, str(HERE))
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in tb if "probewarp" in f.filename or "/main/" in f.filename]
    f = (ours or tb)[-1] if tb else None
    return f"{Path(f.filename).name}:{f.lineno}" if f else "?"


def _signature(exc: BaseException) -> str:
    return f"{type(exc).__name__}@{_where(exc)}"


def shrink(fn, data: bytes, sig: str, budget_s: float = 20.0) -> bytes:
    """Greedy: drop chunks (halves down to single bytes) while the crash keeps its signature."""
    t0 = time.time()
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and time.time() - t0 < budget_s:
        i, changed = 0, False
        while i < len(data) and time.time() - t0 < budget_s:
            cand = data[:i] + data[i + chunk:]
            try:
                fn(cand)
                ok = False
            except BaseException as e:          # noqa: BLE001 - looking for the same crash
                ok = _signature(e) == sig
            if ok:
                data, changed = cand, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return data


def _save_crash(target: str, data: bytes) -> str:
    """Keep a crash input; its path (relative to the repository when inside it)."""
    CRASHES.mkdir(parents=True, exist_ok=True)
    p = CRASHES / f"{target}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
    p.write_bytes(data)
    try:
        return str(p.relative_to(HERE.parent))
    except ValueError:
        return str(p)


# -- the mutation engine -------------------------------------------------------
BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 63, 2 ** 64 - 1]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        n = len(b)
        if op == 0 and n:                                   # bit flip
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:                                 # random byte
            b[rng.randrange(n)] = rng.randrange(256)
        elif op == 2:                                       # insert
            i = rng.randint(0, n)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and n:                                 # delete a range
            i = rng.randrange(n)
            del b[i:i + rng.randint(1, 16)]
        elif op == 4 and n >= 8:                            # integer field boundary
            width = rng.choice([1, 2, 4, 8])
            i = rng.randrange(0, n - width + 1)
            if rng.random() < 0.5:
                i -= i % width
            v = rng.choice(BOUNDARY) & ((1 << (8 * width)) - 1)
            b[i:i + width] = v.to_bytes(width, "little")
        elif op == 5 and n:                                 # truncate
            del b[rng.randrange(n):]
        elif op == 6 and n:                                 # duplicate a range
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 64))
            k = rng.randint(0, n)
            b[k:k] = b[i:j]
        elif op == 7 and n:                                 # ascii digit swap (text formats)
            i = rng.randrange(n)
            b[i] = ord(rng.choice("0123456789-+.eE,\n9"))
    return bytes(b)


def run_mutate(target: str, cases: int, seed: int, keep_going: bool) -> dict:
    import resource
    import signal
    import targets as T
    fn = T.TARGETS[target]
    corpus = T.seeds(target)
    rng = random.Random(seed)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    base = _vm_bytes()
    try:
        resource.setrlimit(resource.RLIMIT_AS, (base + (2 << 30), hard))
    except (ValueError, OSError):
        pass

    def alarm(*_):
        raise TimeoutError("case ran past 10 s")

    signal.signal(signal.SIGALRM, alarm)
    crashes, seen = [], set()
    pool = list(corpus)
    t0 = time.time()
    done = 0
    for done in range(1, cases + 1):
        src = rng.choice(pool) if rng.random() < 0.8 else rng.choice(corpus)
        data = mutate(rng, src)
        signal.alarm(10)
        try:
            fn(data)
        except BaseException as e:                          # noqa: BLE001
            signal.alarm(0)
            if isinstance(e, KeyboardInterrupt):
                raise
            sig = _signature(e)
            if sig not in seen:
                seen.add(sig)
                small = shrink(fn, data, sig)
                crashes.append(dict(kind=type(e).__name__, message=str(e)[:500], where=_where(e),
                                    input_size=len(data), minimal_size=len(small),
                                    reproducer=_save_crash(target, small)))
                print(f"crash {sig}: {str(e)[:200]}", flush=True)
                if not keep_going:
                    break
        finally:
            signal.alarm(0)
        if len(pool) < 256 and rng.random() < 0.05:
            pool.append(data)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ValueError, OSError):
        pass
    T.cleanup()
    return dict(engine="mutate", cases=done, seconds=round(time.time() - t0, 1), crashes=crashes)


def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# -- the atheris engine --------------------------------------------------------
#: The reader modules libFuzzer gets coverage of.
INSTRUMENTED = ["probewarp.format.archive", "probewarp.format.grid", "probewarp.format.spatialhash",
                "probewarp.format.texformats", "probewarp.baker.probeset", "probewarp.baker.lazyfaces",
                "probewarp.baker.validation", "probewarp.baker.hdrio", "probewarp.baker.panorama",
                "probewarp.baker.importer"]

def _child(target: str, cases: int, seed: int, corpus_dir: str, keep_going: str | None) -> None:
    """In the child process: instrument, then hand over to libFuzzer (which exits)."""
    import atheris
    # numba-compiled modules must not be instrumented (numba cannot compile
    # the tracing calls): import them first, uninstrumented
    import importlib
    for mod in ("probewarp.baker.cubemap", "probewarp.baker.kernels"):
        importlib.import_module(mod)
    with atheris.instrument_imports(include=["probewarp"]):
        for mod in INSTRUMENTED:
            importlib.import_module(mod)
    import targets as T
    fn = T.TARGETS[target]
    seen = set()

    def one(data: bytes):
        try:
            fn(data)
        except Exception as e:
            if keep_going is None:
                raise
            sig = _signature(e)
            if sig not in seen:
                seen.add(sig)
                with open(keep_going, "a") as f:
                    f.write(json.dumps(dict(sig=sig, kind=type(e).__name__, message=str(e)[:500],
                                            where=_where(e), input=data.hex())) + "\n")

    art = str(CRASHES) + f"/{target}-"
    CRASHES.mkdir(parents=True, exist_ok=True)
    atheris.Setup([sys.argv[0], corpus_dir, f"-runs={cases}", f"-seed={seed}", "-timeout=10",
                   "-rss_limit_mb=2048", f"-artifact_prefix={art}", "-max_len=16384",
                   "-print_final_stats=1"], one)
    atheris.Fuzz()


def run_atheris(target: str, cases: int, seed: int, keep_going: bool) -> dict:
    import targets as T
    with tempfile.TemporaryDirectory(prefix=f"pwcorpus-{target}-") as cdir:
        for i, s in enumerate(T.seeds(target)):
            Path(cdir, f"seed{i}").write_bytes(s)
        T.cleanup()
        kg = Path(cdir).parent / f"pwfuzz-{target}-{os.getpid()}.jsonl"
        if kg.exists():
            kg.unlink()
        cmd = [sys.executable, __file__, "--child", target, "--cases", str(cases), "--seed", str(seed),
               "--corpus", cdir] + (["--kg-file", str(kg)] if keep_going else [])
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        secs = time.time() - t0
        log = proc.stdout + proc.stderr
        if proc.returncode != 0 or kg.exists():
            (RESULTS / f"{target}.log").write_text(log[-20000:])     # kept beside a crash only
        m = re.findall(r"Done (\d+) runs in (\d+) second", log)
        done = int(m[-1][0]) if m else max([int(x) for x in re.findall(r"^#(\d+)\s", log, re.M)] or [0])
        crashes = []
        if kg.exists():
            for line in kg.read_text().splitlines():
                c = json.loads(line)
                data = bytes.fromhex(c.pop("input"))
                sig = c.pop("sig")
                small = shrink(T.TARGETS[target], data, sig)
                crashes.append(dict(c, input_size=len(data), minimal_size=len(small),
                                    reproducer=_save_crash(target, small)))
            kg.unlink()
        if proc.returncode != 0:
            kind = ("timeout" if "ALARM: working on the last Unit" in log or "-timeout" in log and "timeout" in log
                    else "out-of-memory" if "out-of-memory" in log else "uncaught exception")
            msg = re.search(r"=== Uncaught Python exception: ===\n(.*?)\n(?:Traceback|==)", log, re.S)
            art = re.findall(r"Test unit written to (\S+)", log)
            size = Path(art[-1]).stat().st_size if art and Path(art[-1]).exists() else None
            minimal = size
            if art and Path(art[-1]).exists() and kind == "uncaught exception":
                data = Path(art[-1]).read_bytes()
                try:
                    T.TARGETS[target](data)
                except Exception as e:
                    minimal = len(shrink(T.TARGETS[target], data, _signature(e)))
            crashes.append(dict(kind=kind, message=(msg.group(1).strip() if msg else log[-800:]),
                                input_size=size, minimal_size=minimal, reproducer=art[-1] if art else None))
        T.cleanup()
    return dict(engine="atheris", cases=done, seconds=round(secs, 1), crashes=crashes)


def main(argv=None) -> int:
    import targets as T
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", nargs="?", choices=sorted(T.TARGETS))
    ap.add_argument("--all", action="store_true", help="every target, one after the other")
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", choices=["atheris", "mutate"], default=None)
    ap.add_argument("--keep-going", action="store_true", help="record every distinct crash and go on")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--kg-file", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        _child(a.child, a.cases, a.seed, a.corpus, a.kg_file)
        return 0
    if not a.all and not a.target:
        ap.error("name a TARGET or --all")
    engine = a.engine
    if engine is None:
        import importlib.util
        engine = "atheris" if importlib.util.find_spec("atheris") is not None else "mutate"
    RESULTS.mkdir(parents=True, exist_ok=True)
    status = 0
    for t in (sorted(T.TARGETS) if a.all else [a.target]):
        run = run_atheris if engine == "atheris" else run_mutate
        res = dict(target=t, seed=a.seed, **run(t, a.cases, a.seed, a.keep_going))
        res["command"] = " ".join(["python", "fuzz/run.py", t, "--cases", str(a.cases), "--seed", str(a.seed)]
                                  + (["--engine", a.engine] if a.engine else [])
                                  + (["--keep-going"] if a.keep_going else []))
        (RESULTS / f"{t}.json").write_text(json.dumps(res, indent=2) + "\n")
        print(f"{t}: {res['engine']}, {res['cases']} cases, {res['seconds']} s, {len(res['crashes'])} crash(es)")
        for c in res["crashes"]:
            print(f"  {c['kind']} at {c.get('where', '?')}: {str(c['message'])[:300]}")
        status |= bool(res["crashes"])
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
