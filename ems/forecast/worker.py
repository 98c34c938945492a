"""Model fits in a short-lived child process: `python -m ems.forecast.worker`, JSON in on stdin, JSON out.

statsmodels and pvlib pull in pandas (~150 MB resident together); the appliance process must stay
small and its event loop responsive, so a fit runs here and the memory goes back to the system when
the child exits. The child lowers its own CPU priority so the safety loop is never starved. The
parent side is `run_worker`, a blocking call (use it from an executor) with a hard timeout.
Answer: {"ok": true, "result": {...}, "fit_s": s, "peak_rss_mb": MB} or {"ok": false, "error": "..."}.

`python -m ems.forecast.worker --serve` answers one request per line until stdin closes: the
backtest (`ServingWorker`) fits thousands of times in a row and would otherwise spend most of its
time importing pandas. The same `handle` answers, so a backtest runs exactly the runtime's fits.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger(__name__)

NICE_INCREMENT = 10


class WorkerError(Exception):
    """A fit that failed, timed out or answered nonsense; the message says which."""


def run_worker(request: dict[str, Any], timeout_s: float = 120.0) -> dict[str, Any]:
    """Run one fit in a child process and return its `result`; raise WorkerError otherwise.

    The child is killed at `timeout_s`. Its figures (`fit_s`, `peak_rss_mb`) are added to the result
    under `_worker` for the status page and the bench.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "ems.forecast.worker"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise WorkerError(f"{request.get('kind')} fit timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise WorkerError(f"cannot start the forecast worker: {exc}") from None
    wall_s = time.monotonic() - t0
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = proc.stderr.strip().splitlines()[-3:]
        raise WorkerError(f"{request.get('kind')} worker exited {proc.returncode} without an answer: "
                          f"{' | '.join(tail) or 'no output'}") from None
    if not answer.get("ok"):
        raise WorkerError(f"{request.get('kind')} fit failed: {answer.get('error')}")
    result = answer["result"]
    result["_worker"] = {"fit_s": answer.get("fit_s"), "peak_rss_mb": answer.get("peak_rss_mb"),
                         "wall_s": round(wall_s, 3)}
    return result


class ServingWorker:
    """One long-lived child (`--serve`) for many fits in a row; `fit` has `run_worker`'s contract.

    A context manager: the child ends when the block does. `peak_rss_mb` is the child's peak so far.
    A fit that fails to answer (the child died) restarts the child for the next one.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.peak_rss_mb: float | None = None
        self.fits = 0
        self.fit_s = 0.0

    def __enter__(self) -> "ServingWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        return subprocess.Popen([sys.executable, "-m", "ems.forecast.worker", "--serve"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

    def fit(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        t0 = time.monotonic()
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            answer = json.loads(line)
        except (OSError, ValueError) as exc:
            self.close()
            raise WorkerError(f"{request.get('kind')} serving worker gave no answer: {exc}") from None
        if answer.get("peak_rss_mb") is not None:
            self.peak_rss_mb = max(self.peak_rss_mb or 0.0, float(answer["peak_rss_mb"]))
        self.fits += 1
        self.fit_s += float(answer.get("fit_s") or 0.0)
        if not answer.get("ok"):
            raise WorkerError(f"{request.get('kind')} fit failed: {answer.get('error')}")
        result: dict[str, Any] = answer["result"]
        result["_worker"] = {"fit_s": answer.get("fit_s"), "peak_rss_mb": answer.get("peak_rss_mb"),
                             "wall_s": round(time.monotonic() - t0, 3)}
        return result

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def handle(request: dict[str, Any]) -> dict[str, Any]:
    kind = request.get("kind")
    if kind == "load":
        from .load import fit_load
        return fit_load(request)
    if kind == "pv":
        from .pv import fit_pv
        return fit_pv(request)
    raise ValueError(f"unknown request kind {kind!r} (allowed: load, pv)")


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so
    a child would report its parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def answer_for(text: str) -> dict[str, Any]:
    """One request's answer, with the fit's time and this process's peak memory."""
    t0 = time.perf_counter()
    try:
        request = json.loads(text)
        if not isinstance(request, dict):
            raise ValueError("the request must be a JSON object")
        result = handle(request)
        answer: dict[str, Any] = {"ok": True, "result": result}
    except Exception as exc:  # every failure becomes an answer; the parent decides what to fall back to
        answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    answer["fit_s"] = round(time.perf_counter() - t0, 4)
    peak = _peak_rss_mb()
    answer["peak_rss_mb"] = None if peak is None else round(peak, 1)
    return answer


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        os.nice(NICE_INCREMENT)
    except OSError:
        pass
    if args == ["--serve"]:
        for line in sys.stdin:
            if line.strip():
                sys.stdout.write(json.dumps(answer_for(line)) + "\n")
                sys.stdout.flush()
        return 0
    sys.stdout.write(json.dumps(answer_for(sys.stdin.read())) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
