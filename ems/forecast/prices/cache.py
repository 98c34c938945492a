"""The price cache: known prices by 15-minute slot, persisted as JSON."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Sequence

from ...atomic import write_atomic
from ..series import local_midnight_ts
from .intervals import SLOT_S, PriceInterval

log = logging.getLogger(__name__)


class PriceCache:
    """Known prices by 15-minute slot: slot start → (€/MWh, step of the published interval).

    Newer data replaces older data slot by slot, so a partial download never erases what it lacks.
    Within one batch hourly intervals are applied before quarter-hours, so the finer price wins where
    a source publishes both. Persisted as JSON with an atomic write.
    """

    VERSION = 1

    def __init__(self, path: Path | None):
        self.path = path
        self.slots: dict[int, tuple[float, int]] = {}

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("version") != self.VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
            self.slots = {int(s): (float(p), int(step)) for s, p, step in doc["slots"]}
            log.info("price cache %s: %d slots", self.path, len(self.slots))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("price cache %s unreadable, starting empty: %s", self.path, exc)
            self.slots = {}

    def save(self) -> None:
        if self.path is None:
            return
        doc = {"version": self.VERSION, "slots": [[s, p, step] for s, (p, step) in sorted(self.slots.items())]}
        write_atomic(self.path, json.dumps(doc, separators=(",", ":")).encode("utf-8"))

    def merge(self, intervals: Sequence[PriceInterval]) -> int:
        """Store intervals; returns how many slots changed."""
        changed = 0
        for iv in sorted(intervals, key=lambda p: -p.step_s):
            for slot in range(iv.start_ts, iv.end_ts, SLOT_S):
                entry = (iv.price_eur_per_mwh, iv.step_s)
                if self.slots.get(slot) != entry:
                    self.slots[slot] = entry
                    changed += 1
        return changed

    def prune(self, before_ts: float) -> None:
        self.slots = {s: v for s, v in self.slots.items() if s >= before_ts}

    def covered_until(self, from_ts: float) -> float:
        """End of the contiguous known run starting at the slot holding `from_ts` (= from_ts if none)."""
        slot = int(math.floor(from_ts / SLOT_S) * SLOT_S)
        if slot not in self.slots:
            return from_ts
        while slot in self.slots:
            slot += SLOT_S
        return float(slot)

    def days_known(self, start_ts: float, end_ts: float) -> int:
        """Local days in [start_ts, end_ts) with at least 20 hours of prices."""
        per_day: dict[float, int] = {}
        for slot in self.slots:
            if start_ts <= slot < end_ts:
                day = local_midnight_ts(slot)
                per_day[day] = per_day.get(day, 0) + 1
        return sum(1 for n in per_day.values() if n >= 20 * 4)
