"""MQTT as a plant-state source: configured topics (a meter, a wallbox, a bridged BMS) read into bus points.

Each `mqtt.sources` entry maps one topic — a plain number, or a JSON object with the value at a dotted path —
to one plant-state point, scaled, with source "mqtt" and the entry's own max age. What cannot be read as a
plausible number (garbage, a missing key, NaN, a power of a gigawatt) is published as unknown (None), never as
the last good value: the safety loop's rules for unknown and stale values apply, as for a Modbus device. When
the connection goes, every point of every source is published as unknown at once (`unknown_all`).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..config.schema import MqttConfig
from ..state import Measurement

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
PLAUSIBLE: Mapping[str, tuple[float, float]] = {
    "grid.power_w": (-1e7, 1e7), "pv.power_w": (-1e5, 1e7), "load.power_w": (-1e5, 1e7), "bess.power_w": (-1e7, 1e7),
    "battery.soc_pct": (0.0, 100.0), "battery.soh_pct": (0.0, 100.0), "battery.voltage_v": (0.0, 2000.0),
    "battery.current_a": (-1e4, 1e4), "battery.temperature_c": (-60.0, 150.0),
}
"""Readings outside these ranges are errors in the sender, not plant states (powers up to 10 MW)."""


class SourceValueError(ValueError):
    pass


def _walk(data: Any, path: str) -> Any:
    for key in path.split("."):
        if isinstance(data, Mapping) and key in data:
            data = data[key]
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            raise SourceValueError(f"no {key!r} in the payload (json_key {path})")
    return data


def reading(source: MqttConfig.Source, payload: bytes) -> float:
    """The scaled value in `payload`, or SourceValueError saying why there is none."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise SourceValueError(f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SourceValueError("payload is not UTF-8 text") from None
    try:
        data: Any = json.loads(text)
    except RecursionError:
        raise SourceValueError("payload nested too deeply") from None
    except ValueError:
        data = text  # not JSON: tried as a plain number below
    value = _walk(data, source.json_key) if source.json_key is not None else data
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise SourceValueError(f"not a number: {value[:40]!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SourceValueError(f"not a finite number: {str(value)[:40]!r}")
    scaled = float(value) * source.scale
    lo, hi = PLAUSIBLE[source.point]
    if not lo <= scaled <= hi:
        raise SourceValueError(f"{scaled:g} is outside the plausible range of {source.point} ({lo:g}..{hi:g})")
    return scaled


@dataclass
class SourceMap:
    """The configured sources by topic, with counts for the status."""

    sources: Sequence[MqttConfig.Source]
    messages: int = 0
    rejected: int = 0
    last_error: str | None = None

    @property
    def topics(self) -> list[str]:
        return sorted({s.topic for s in self.sources})

    def readings(self, topic: str, payload: bytes, now: float) -> dict[str, Measurement]:
        """The bus update for a message on `topic`: each of its points, None where the payload has no value."""
        updates: dict[str, Measurement] = {}
        for source in self.sources:
            if source.topic != topic:
                continue
            self.messages += 1
            try:
                value: float | None = reading(source, payload)
            except SourceValueError as exc:
                value = None
                self.rejected += 1
                if self.last_error != str(exc):
                    log.warning("MQTT source %s → %s: %s (published as unknown)", topic, source.point, exc)
                self.last_error = str(exc)
            updates[source.point] = Measurement(value, now, "mqtt", source.max_age_s)
        return updates

    def unknown_all(self, now: float) -> dict[str, Measurement]:
        """Every point as unknown: the link that fed them is gone."""
        return {s.point: Measurement(None, now, "mqtt", s.max_age_s) for s in self.sources}

    def status(self) -> dict[str, Any]:
        return {"topics": self.topics, "messages": self.messages, "rejected": self.rejected,
                "last_error": self.last_error}
