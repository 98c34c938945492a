"""Fixtures that start real things: the `ems run` process on an ephemeral port, with its own data dir."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from ems.resources import demo_config_text

SERVING = re.compile(r"serving on http://([\d.]+):(\d+)")


@dataclass
class EmsProcess:
    proc: subprocess.Popen[str]
    data_dir: Path
    config_path: Path
    base_url: str = ""
    lines: list[str] = field(default_factory=list)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def post(self, path: str, body: bytes, timeout: float = 5.0) -> tuple[int, Any]:
        req = urllib.request.Request(self.base_url + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def demo_config(**overrides: dict[str, Any]) -> dict[str, Any]:
    """The bundled demo config with sections overridden (merged key by key)."""
    cfg = yaml.safe_load(demo_config_text())
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def start_ems(tmp_path: Path, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
              timeout_s: float = 20.0) -> EmsProcess:
    data_dir = tmp_path / "data"
    config_path = tmp_path / "ems.yaml"
    config_path.write_text(yaml.safe_dump(config if config is not None else demo_config()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ems", "run", "--config", str(config_path), "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    ems = EmsProcess(proc, data_dir, config_path)
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            ems.lines.append(line)
            match = SERVING.search(line)
            if match:
                found.put(f"http://{match.group(1)}:{match.group(2)}")

    threading.Thread(target=pump, daemon=True).start()
    try:
        ems.base_url = found.get(timeout=timeout_s)
    except queue.Empty:
        proc.kill()
        raise AssertionError("ems run did not start serving:\n" + "".join(ems.lines[-30:]))
    return ems


@pytest.fixture
def ems_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[EmsProcess] = []

    def factory(config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                subdir: str = "ems") -> EmsProcess:
        (tmp_path / subdir).mkdir(exist_ok=True)
        ems = start_ems(tmp_path / subdir, config, env)
        started.append(ems)
        return ems

    yield factory
    for ems in started:
        if ems.proc.poll() is None:
            ems.proc.kill()
            ems.proc.wait(timeout=10)


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy (bounded); returns that value or raises."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last: {last!r})")
