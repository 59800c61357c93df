"""Benchmark: what compiling the pure-Python hot paths to C with mypyc would buy.

The receiver's split (``wawindow.ingest.split``, ``readers``, ``fields``) and the worker's
rules (``wawindow.rules``) are plain, fully typed Python, which mypyc (part of mypy, a
development dependency) compiles to a C extension. This copies ``src/wawindow`` to
a temporary directory, compiles those modules there, and times the same loops with the
interpreted and the compiled code, alternating, in fresh processes:

- **split**: a realistic webhook body (the receiver benchmark's mix) split into events and
  each event encoded as its ``webhook-events`` record, per body;
- **rules**: a realistic event (the worker benchmark's mix, grouped by user) applied to its
  conversation's stored state: decode the state, apply the rules, encode the state.

No I/O: this is the most the compiled code could save per request or per event, before
aiohttp, aiokafka and redis-py, which stay as they are. The project does not ship compiled
modules (docs/performance.md says why).

Usage: python bench/compiled.py [--rounds 3]
Writes bench/results/compiled.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
RESULTS = HERE / "results" / "compiled.json"
COMPILED = [
    "ingest/split.py",
    "ingest/readers.py",
    "ingest/fields.py",
    "keys.py",
    "contracts.py",
    "rules",
]
# the modules the loops run, each of which must load compiled in the compiled copy
CHECKED = [
    "wawindow." + name.removesuffix(".py").replace("/", ".") for name in COMPILED if name != "rules"
] + [
    "wawindow.rules.engine",
    "wawindow.rules.state",
]

# run in a fresh process with the code under test first on sys.path; prints microseconds
LOOP = """
import hashlib, importlib, sys, time
import orjson
sys.path[:0] = [sys.argv[1], sys.argv[2]]
for name in sys.argv[4].split(","):
    file = importlib.import_module(name).__file__
    assert file.endswith(".so") == (sys.argv[3] == "compiled"), file
import wawindow.rules.engine as rules
from wawindow.config import Settings
from wawindow.rules.state import State
from wawindow.ingest.split import split_body
from webhook_throughput import realistic_bodies
from traffic import classic

bodies = realistic_bodies(2000)
now = 1_780_000_000
events = [orjson.loads(raw) for _, raw in classic(5000, now, interleave=1)]
config = rules.Rules.from_settings(Settings())

def split(out=None):
    for raw in bodies:
        for event in split_body(raw, now * 1000).events:
            record, key = event.encode(), event.key.encode()
            if out is not None:
                out.append(record + key)
    return len(bodies)

def apply(out=None):
    stored = {}
    for event in events:
        key = event["key"]
        outcome = rules.apply(State.decode(stored.get(key), key), key, [event], now, config)
        stored[key] = outcome.state.encode(key)
        if out is not None:
            out.append(stored[key] + repr(outcome.transitions).encode())
    return len(events)

# every record, state and window event written, once, untimed: both builds must agree
written = []
split(written)
apply(written)
digest = hashlib.sha256(b"".join(written)).hexdigest()
del written

def best(loop):
    times = []
    for _ in range(7):
        started = time.perf_counter()
        n = loop()
        times.append((time.perf_counter() - started) / n * 1e6)
    return min(times[2:])  # the first two warm up

found = {"split_us": best(split), "rules_us": best(apply), "digest": digest}
print(orjson.dumps(found).decode())
"""


def compile_copy(work: Path) -> float:
    """Copy the package to ``work`` and compile :data:`COMPILED` there; seconds taken."""
    shutil.copytree(SRC / "wawindow", work / "wawindow")
    started = time.monotonic()
    mypyc = Path(sys.executable).parent / "mypyc"
    _run([str(mypyc), *(f"wawindow/{name}" for name in COMPILED)], cwd=work)
    return time.monotonic() - started


def _run(argv: list[str], cwd: Path | None = None) -> str:
    """Run ``argv``; its output, or its error output as this script's error when it fails."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return done.stdout


def measure(path: Path, mode: str, digests: set[str]) -> dict[str, float]:
    argv = [sys.executable, "-c", LOOP, str(path), str(HERE), mode, ",".join(CHECKED)]
    result = json.loads(_run(argv))
    digests.add(result.pop("digest"))
    if len(digests) > 1:
        raise SystemExit("the compiled code wrote other records or states than the interpreted")
    return {name: float(value) for name, value in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="alternating pairs of runs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wawindow-mypyc-") as tmp:
        work = Path(tmp)
        compile_seconds = compile_copy(work)
        runs: dict[str, list[dict[str, float]]] = {"interpreted": [], "compiled": []}
        digests: set[str] = set()
        for _ in range(args.rounds):
            runs["interpreted"].append(measure(SRC, "interpreted", digests))
            runs["compiled"].append(measure(work, "compiled", digests))
    results: dict[str, object] = {
        "python": sys.version.split()[0],
        "compiled_modules": COMPILED,
        "compile_seconds": round(compile_seconds, 1),
        "runs": runs,
    }
    for loop in ("split_us", "rules_us"):
        interpreted = min(r[loop] for r in runs["interpreted"])
        compiled = min(r[loop] for r in runs["compiled"])
        results[loop] = {
            "interpreted": round(interpreted, 2),
            "compiled": round(compiled, 2),
            "speedup": round(interpreted / compiled, 2),
        }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
