"""`make bench`: run every bench/bench_*.py, print one table, write bench/results.json (flat name → number).

Each script prints a JSON object of figures (unit in the name) as its last stdout line. Figures come
with the baseline each was compared against in the same run, so ratios survive a different machine.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()} · {cpu} · {os.cpu_count()} cores · Python {platform.python_version()}"


def main() -> int:
    only = sys.argv[1:]
    results: dict[str, float] = {}
    previous = HERE / "results.json"
    if only and previous.exists():  # a partial run updates its own figures and keeps the others
        results.update(json.loads(previous.read_text()))
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        if only and script.stem not in only:
            continue
        print(f"running {script.name} …", flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=1800)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            failed.append(script.name)
            print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
            continue
        results.update(json.loads(lines[-1]))
    print(f"\nmachine: {machine()}\n")
    width = max((len(k) for k in results), default=10)
    for name, value in results.items():
        print(f"  {name:<{width}}  {value:>12.3f}")
    (HERE / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"\nwrote {HERE / 'results.json'}")
    if failed:
        print("FAILED:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
