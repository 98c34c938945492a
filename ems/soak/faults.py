"""The soak's fault schedule: which trouble hits the plant when, drawn from a seed.

Every kind has a rate (per plant day, configurable), a duration range and its parameters; `schedule()`
turns rates and a seed into one deterministic list of `Fault`s. Two families:

- *foreground* faults (DSO orders, devices failing, BMS alarms and limit drops, meter faults, the EMS
  process killed) never overlap each other: each one's effect, and the EMS's reaction to it, is judged
  alone, and the plant gets `settle_s` of calm between two of them;
- *background* faults (price feed outages, negative-price days, config changes) overlap anything, as
  they would on site.

With `each_kind=True` every kind (and every device for the device faults) occurs at least once, which is
what a short soak in the test suite needs. A fault's `start_s` / `end_s` are plant seconds from the soak's
start; the injector (`ems.soak.world`) applies it at its start, undoes it at its end, and logs both.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

log = logging.getLogger(__name__)

DEVICES = ("bms", "pcs", "meter", "dso")
DAY_S = 86400.0


@dataclass(frozen=True)
class FaultKind:
    """One kind of trouble: how often (per plant day), how long (s), and what it means."""

    name: str
    rate_per_day: float
    min_s: float
    max_s: float
    background: bool
    what: str


KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("dso_trip", 2.0, 60, 1800, False, "the DSO box orders a trip (shutdown), then back to normal"),
    FaultKind("dso_limit", 2.0, 300, 7200, False, "the DSO box limits to 30 or 60 %, then back to normal"),
    FaultKind("dso_14a", 1.0, 300, 7200, False, "a §14a EnWG dimming order (0 % step): discharge 0, "
                                               "charging dimmed to the §14a minimum"),
    FaultKind("device_silent", 3.0, 10, 300, False, "a device stops answering (requests time out)"),
    FaultKind("device_exception", 2.0, 10, 180, False, "a device answers every request with a Modbus "
                                                       "exception (4 device failure or 6 busy)"),
    FaultKind("device_garbage", 2.0, 10, 120, False, "a device answers with bytes that are no Modbus frame"),
    FaultKind("reconnect_storm", 1.0, 60, 300, False, "a device reboots every 2-6 s: links drop, reconnects"),
    FaultKind("bms_alarm", 2.0, 60, 1200, False, "the BMS raises an alarm of a drawn severity "
                                                 "(warning, critical, shutdown)"),
    FaultKind("bms_limit_drop", 1.0, 600, 10800, False, "the BMS drops its power limits at once "
                                                        "(cold cells, high-SoC calibration)"),
    FaultKind("meter_spike", 4.0, 1, 6, False, "the grid meter reads a ±10-30 kW spike"),
    FaultKind("meter_stale", 1.0, 30, 180, False, "the grid meter answers, but its readings froze"),
    FaultKind("ems_kill", 0.5, 5, 120, False, "the EMS process is killed (SIGKILL) and restarted after "
                                              "the downtime, with its data dir kept"),
    FaultKind("price_outage", 0.3, 3600, 43200, True, "the price feed refuses connections or serves "
                                                       "a broken payload"),
    FaultKind("negative_prices", 0.15, DAY_S, DAY_S, True, "a day of strongly negative midday prices "
                                                           "(published the day before, as the market does)"),
    FaultKind("config_bess", 0.3, 3600, 21600, True, "a config change mid-run: battery power limits "
                                                     "lowered (and later restored)"),
    FaultKind("config_feedin", 0.3, 3600, 21600, True, "a config change mid-run: the feed-in rule "
                                                       "tightened (and later restored)"),
)}

BMS_ALARMS = {  # severity -> a Hithium alarm of that severity (the profile is the reference)
    "warning": "bms_alarm", "critical": "overcurrent_serious", "shutdown": "bms_fault"}


@dataclass(frozen=True)
class Fault:
    """One scheduled fault. `params` say how (device, percentage, severity, caps ...)."""

    id: int
    kind: str
    start_s: float
    duration_s: float
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def background(self) -> bool:
        return KINDS[self.kind].background

    @property
    def label(self) -> str:
        detail = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"#{self.id} {self.kind}" + (f" ({detail})" if detail else "")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "start_s": round(self.start_s, 3),
                "duration_s": round(self.duration_s, 3), "params": dict(self.params)}


def _params(kind: str, rng: random.Random, device: str | None) -> dict[str, Any]:
    if kind == "dso_limit":
        return {"limit_pct": rng.choice((30.0, 60.0))}
    if kind == "dso_14a":
        return {"limit_pct": 0.0}
    if kind in ("device_silent", "device_exception", "device_garbage", "reconnect_storm"):
        params: dict[str, Any] = {"device": device or rng.choice(DEVICES)}
        if kind == "device_exception":
            params["code"] = rng.choice((4, 6))
        if kind == "reconnect_storm":
            params["reboot_every_s"] = round(rng.uniform(2.0, 6.0), 1)
        return params
    if kind == "bms_alarm":
        severity = rng.choice(tuple(BMS_ALARMS))
        return {"severity": severity, "alarm": BMS_ALARMS[severity]}
    if kind == "bms_limit_drop":
        cause = rng.choice(("cold", "high_soc"))
        if cause == "cold":  # LFP: no charge when freezing, discharge derated
            return {"cause": cause, "charge_cap_w": rng.choice((0.0, 500.0, 1000.0)),
                    "discharge_cap_w": rng.choice((1500.0, 2500.0))}
        return {"cause": cause, "charge_cap_w": rng.choice((300.0, 800.0)), "discharge_cap_w": None}
    if kind == "meter_spike":
        return {"spike_w": round(rng.choice((-1.0, 1.0)) * rng.uniform(10_000.0, 30_000.0), 0)}
    if kind == "price_outage":
        return {"mode": rng.choice(("refused", "bad_payload"))}
    if kind == "config_bess":
        return {"max_charge_power_kw": rng.choice((2.0, 3.0)), "max_discharge_power_kw": rng.choice((2.5, 3.5))}
    if kind == "config_feedin":
        return {"fixed_limit_pct": rng.choice((30.0, 50.0))}
    return {}


def schedule(days: float, seed: int, rates: Mapping[str, float] | None = None, *, each_kind: bool = False,
             warmup_s: float = 1800.0, settle_s: float = 120.0) -> list[Fault]:
    """The faults of a `days`-long soak for `seed`: deterministic, sorted by start.

    `rates` override the per-day rates of `KINDS` (0 switches a kind off). Nothing starts in the first
    `warmup_s` (the EMS commissions itself: devices connect, the first plan is made) and every fault
    ends by the soak's end.
    """
    rates = {k: KINDS[k].rate_per_day for k in KINDS} | dict(rates or {})
    unknown = set(rates) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)} (allowed: {', '.join(KINDS)})")
    rng = random.Random(seed)
    end_s = days * DAY_S
    span = max(0.0, end_s - warmup_s)
    wanted: list[tuple[float, str, str | None]] = []  # (start, kind, device or None: drawn)
    for name in KINDS:
        n = _poisson(rng, rates[name] * days)
        if each_kind and rates[name] > 0:
            if name in ("device_silent", "device_exception", "device_garbage", "reconnect_storm"):
                for each_device in DEVICES:
                    wanted.append((warmup_s + rng.random() * span, name, each_device))
            else:
                n = max(n, 1)
        wanted.extend((warmup_s + rng.random() * span, name, None) for _ in range(n))
    wanted.sort(key=lambda w: (w[0], w[1]))

    faults: list[Fault] = []
    foreground_free_s = warmup_s
    background_starts: list[tuple[float, str]] = []
    for start, name, device in wanted:
        kind = KINDS[name]
        duration = kind.min_s if kind.max_s <= kind.min_s else \
            math.exp(rng.uniform(math.log(kind.min_s), math.log(kind.max_s)))  # log-uniform: many short, some long
        params = _params(name, rng, device)
        if name == "negative_prices":  # a whole soak day (the market publishes it the day before)
            start = math.floor(start / DAY_S) * DAY_S
        if kind.background:
            if start + duration > end_s:
                duration = end_s - start
            if duration <= 0:
                continue
            background_starts.append((start, name))
        else:
            start = max(start, foreground_free_s)
            if start + duration > end_s - settle_s:
                if each_kind:  # squeeze it in rather than drop the only one of its kind
                    duration = min(duration, max(kind.min_s, end_s - settle_s - start))
                if start + duration > end_s - settle_s:
                    log.debug("fault %s does not fit before the end; dropped", name)
                    continue
            foreground_free_s = start + duration + settle_s
        faults.append(Fault(0, name, round(start, 3), round(duration, 3), params))
    faults.sort(key=lambda f: (f.start_s, f.kind))
    return [Fault(i + 1, f.kind, f.start_s, f.duration_s, f.params) for i, f in enumerate(faults)]


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method for small means, a rounded normal beyond)."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def parse_rates(text: str) -> dict[str, float]:
    """`dso_trip=4,meter_spike=0` → {"dso_trip": 4.0, "meter_spike": 0.0} (for the CLI)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in KINDS:
            raise ValueError(f"{part!r}: expected kind=rate_per_day (kinds: {', '.join(KINDS)})")
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"{part!r}: the rate must be a number of faults per plant day") from None
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"{part!r}: the rate must be a number >= 0")
        out[name] = rate
    return out
