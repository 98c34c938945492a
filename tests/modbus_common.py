"""What the Modbus tests share: the shipped profiles, a plant start time with PV, bounded async runs."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from support import until
from ems.devices import load_library

ROOT = Path(__file__).resolve().parent.parent
PROFILES, PROFILE_ERRORS = load_library(ROOT / "profiles")
START_S = 1_719_828_000.0  # 2024-07-01 10:00 UTC: PV is producing
POLL_S = 0.1


def run(coro: Any, timeout_s: float = 30.0) -> Any:
    """Run one test coroutine with a hard time bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def eventually(predicate: Callable[[], Any], what: str = "condition", timeout_s: float = 5.0) -> Any:
    """Await until `predicate()` is truthy (bounded); fails naming what was awaited."""
    return await until(predicate, timeout_s, what)
