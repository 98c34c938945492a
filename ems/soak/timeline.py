"""What the plant did around each fault and each violation, kept compactly for the report's timelines.

A short ring of the latest observations is always kept; a capture opened at a fault's start (or a
violation) takes the ring's last `before_s` and every observation until `after_s` past its end, at most
`MAX_POINTS` (evenly thinned beyond that). Values are the plant's truth only, as the oracle saw it.
"""
from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .world import PlantTruth

FIELDS = ("ts", "pcs_w", "grid_w", "soc_pct", "bms_charge_limit_w", "bms_discharge_limit_w", "dso_limit_pct",
          "pcs_enabled", "pcs_fallback", "pv_w", "load_w")
MAX_POINTS = 400
RING_S = 60.0
DSO_TRIP_CODE = -1.0  # dso_limit_pct while tripped


def _row(t: PlantTruth) -> tuple[float, ...]:
    limit = DSO_TRIP_CODE if t.dso_mode == "trip" else t.dso_limit_pct
    return (t.ts, t.pcs_w, t.grid_w, t.soc_pct, t.bms_charge_limit_w, t.bms_discharge_limit_w, limit,
            1.0 if t.pcs_enabled else 0.0, 1.0 if t.pcs_fallback else 0.0, t.pv_w, t.load_w)


@dataclass
class Capture:
    key: str
    until_ts: float
    data: list[array] = field(default_factory=lambda: [array("d") for _ in FIELDS])
    stride: int = 1
    seen: int = 0

    def add(self, row: tuple[float, ...]) -> None:
        self.seen += 1
        if (self.seen - 1) % self.stride:
            return
        for column, value in zip(self.data, row):
            column.append(value)
        if len(self.data[0]) >= MAX_POINTS:  # thin out: keep every other point, take half as many from now on
            for i, column in enumerate(self.data):
                self.data[i] = array("d", column[::2])
            self.stride *= 2

    def to_json(self) -> dict[str, Any]:
        return {name: [round(v, 3) for v in column] for name, column in zip(FIELDS, self.data)}


class Timeline:
    def __init__(self) -> None:
        self._ring: deque[tuple[float, ...]] = deque()
        self._open: dict[str, Capture] = {}
        self.captures: dict[str, Capture] = {}

    def observe(self, t: PlantTruth) -> None:
        row = _row(t)
        ring = self._ring
        ring.append(row)
        while ring and row[0] - ring[0][0] > RING_S:
            ring.popleft()
        for key, capture in list(self._open.items()):
            capture.add(row)
            if row[0] > capture.until_ts:
                del self._open[key]

    def capture(self, key: str, before_s: float, until_ts: float) -> None:
        """Open a capture (if not already there): the ring's last `before_s`, then on until `until_ts`."""
        if key in self.captures:
            self.captures[key].until_ts = max(self.captures[key].until_ts, until_ts)
            return
        capture = Capture(key, until_ts)
        last = self._ring[-1][0] if self._ring else None
        for row in self._ring:
            if last is not None and last - row[0] <= before_s:
                capture.add(row)
        self.captures[key] = capture
        self._open[key] = capture

    def keep(self, keys: set[str]) -> None:
        """Drop every capture but `keys` (the worst events the report shows)."""
        self.captures = {k: v for k, v in self.captures.items() if k in keys}
        self._open = {k: v for k, v in self._open.items() if k in keys}
