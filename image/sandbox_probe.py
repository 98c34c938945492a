"""`make image-test` only: run inside the EMS unit's own sandbox on the booted image, check the libraries work.

image/test_image.py copies this file into the test copy of the image and starts it as a transient copy of
phoenyra-ems.service (the same file with only ExecStart=, Type=, the watchdog and restart lines changed; every
sandbox option as shipped). The running EMS already shows that the web server, Modbus, SQLite, the PV fit
(pvlib, in a child process) and the HiGHS plan work under the sandbox; this covers what it may not reach in a
short test on a fresh card: statsmodels' Holt-Winters (the load model needs days of history first), numpy's
BLAS/LAPACK, HiGHS through highspy, pvlib/pandas — each in a child process, like the EMS's forecast worker,
so the sandbox's inheritance to children is what is tested. It also shows that the sandbox is really in
force (MemoryDenyWriteExecute refuses a writable+executable mapping, seccomp and no_new_privs are set, no
capabilities), so a pass cannot come from a sandbox that silently did not apply.

Prints one line `sandbox-probe {json}`; exit status 1 when anything failed. Standard library only in this
process; the children import what they test.
"""
from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time

CHILD_TIMEOUT_S = 300.0  # under TCG emulation importing pandas alone takes tens of seconds

CHILDREN = {
    "numpy_lapack": (
        "import numpy as np\n"
        "a = np.random.default_rng(1).random((300, 300))\n"
        "x = np.linalg.solve(a @ a.T + np.eye(300), np.ones(300))\n"
        "print(round(float(x.sum()), 6))\n"
    ),
    "highs_lp": (
        "import highspy, numpy as np\n"
        "h = highspy.Highs()\n"
        "h.setOptionValue('output_flag', False)\n"
        "h.addVar(0.0, 4.0)\n"
        "h.addVar(1.0, highspy.kHighsInf)\n"
        "h.changeColCost(0, 1.0)\n"
        "h.changeColCost(1, 2.0)\n"
        "h.addRow(5.0, highspy.kHighsInf, 2, np.array([0, 1], dtype=np.int32), np.array([1.0, 1.0]))\n"
        "h.run()\n"
        "status = h.modelStatusToString(h.getModelStatus())\n"
        "assert status == 'Optimal', status\n"
        "print(status, h.getInfo().objective_function_value)\n"
    ),
    "statsmodels_holt_winters": (
        "import warnings\n"
        "import numpy as np\n"
        "from statsmodels.tsa.holtwinters import ExponentialSmoothing\n"
        "t = np.arange(96 * 7)\n"
        "y = 1.0 + 0.5 * np.sin(2 * np.pi * t / 96) + 0.05 * np.random.default_rng(1).standard_normal(t.size)\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        "    fit = ExponentialSmoothing(y, seasonal='add', seasonal_periods=96,\n"
        "                               initialization_method='heuristic').fit()\n"
        "f = fit.forecast(96)\n"
        "assert np.isfinite(f).all() and abs(float(f[24]) - 1.5) < 0.3, f[24]\n"
        "print(round(float(f[24]), 3))\n"
    ),
    "pvlib_clearsky": (
        "import pandas as pd, pvlib\n"
        "times = pd.date_range('2024-06-21', periods=96, freq='15min', tz='Europe/Berlin')\n"
        "cs = pvlib.location.Location(48.14, 11.58, tz='Europe/Berlin').get_clearsky(times)\n"
        "assert 700 < float(cs['ghi'].max()) < 1100, cs['ghi'].max()\n"
        "print(round(float(cs['ghi'].max()), 1))\n"
    ),
}


def status_fields() -> dict[str, str]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("NoNewPrivs", "Seccomp", "CapEff", "CapBnd"):
                fields[key] = value.strip()
    return fields


def wx_mapping_refused() -> bool:
    """MemoryDenyWriteExecute: mmap(PROT_WRITE|PROT_EXEC) must fail with EPERM."""
    try:
        m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        return True
    m.close()
    return False


def main() -> int:
    result: dict[str, object] = {"uid": os.getuid(), **status_fields(), "wx_mapping_refused": wx_mapping_refused()}
    ok = (result["wx_mapping_refused"] is True and result.get("NoNewPrivs") == "1" and result.get("Seccomp") == "2"
          and int(str(result.get("CapEff", "1")), 16) == 0 and result["uid"] != 0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for name, code in CHILDREN.items():
        t0 = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  timeout=CHILD_TIMEOUT_S, env=env)
            rc, out, err = proc.returncode, proc.stdout.strip(), proc.stderr.strip()
        except subprocess.TimeoutExpired:
            rc, out, err = -1, "", f"timed out after {CHILD_TIMEOUT_S:g} s"
        result[name] = {"rc": rc, "s": round(time.monotonic() - t0, 1), "out": (out.splitlines() or [""])[-1][-200:],
                        "err": " | ".join(err.splitlines()[-3:])[-400:]}
        ok = ok and rc == 0
    result["ok"] = ok
    print("sandbox-probe " + json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
