"""Fixtures that start real things: the `ems run` process on an ephemeral port with its own data dir, and
a local HTTP server standing in for the price and weather services. Helpers live in support modules
(support.py, appliance.py, browser.py, modbus_common.py, safety_common.py), never here."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from appliance import EmsProcess, start_ems
from support import FakeClock, PayloadServer


@pytest.fixture
def ems_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[EmsProcess] = []

    def factory(config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                subdir: str = "ems", one_time_admin: bool = False) -> EmsProcess:
        (tmp_path / subdir).mkdir(exist_ok=True)
        ems = start_ems(tmp_path / subdir, config, env, one_time_admin=one_time_admin)
        started.append(ems)
        return ems

    yield factory
    for ems in started:
        if ems.proc.poll() is None:
            ems.proc.kill()
            ems.proc.wait(timeout=10)


@pytest.fixture
def server() -> Iterator[PayloadServer]:
    """A local HTTP server answering in the price or weather service's format (see PayloadServer.serve)."""
    srv = PayloadServer()
    yield srv
    srv.close()


@pytest.fixture
def clock() -> FakeClock:
    """A settable `now()` for stores and throttles that take one (starts at 1_700_000_000 s)."""
    return FakeClock()
