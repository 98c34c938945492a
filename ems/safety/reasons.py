"""Why the safety side decided what it did: typed reasons instead of texts to match.

A `Reason` carries a `ReasonCode` (what code branches on: the safety loop's health and notification
categories, the pages), a `message` for people and, where it helps, structured `detail` values (the
point, the device, the limit in W ...). Each code knows what the loop needs of it:

- `blocks_health`: the watchdogs are not petted while such a reason is active (an input unknown, an
  internal error, a failed real-time layer or PCS write);
- `awaiting_input`: the reason only says an input is not there yet (a stale or missing reading, an
  offline device): the first cycle after start is then safe, expected and no alarm;
- `category`: the notification category of a "limited" decision (`dso`, `feedin` or `safety`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Mapping, Union

DetailValue = Union[str, float, int, bool, None]


class ReasonCode(str, Enum):
    """Every reason the safety side gives; the value is what the JSON (`reason_codes`) carries."""

    POWER_CONTROL_DISABLED = "power_control_disabled"  # the DSO box is ignored
    DEVICE_OFFLINE = "device_offline"  # a configured device is offline
    STALE_INPUT = "stale_input"  # a reading the decision needs is missing, stale or not finite
    SITE_POWER_OUT_OF_RANGE = "site_power_out_of_range"  # grid + battery power is not finite
    INVALID_REQUEST = "invalid_request"  # the real-time layer's request is not a finite number
    BMS_ALARM = "bms_alarm"  # a BMS alarm at or above the safety severity
    INSULATION = "insulation"  # insulation resistance below the minimum
    TEMPERATURE = "temperature"  # battery temperature above the maximum
    DSO_TRIP = "dso_trip"  # the DSO's shutdown order
    DSO_UNKNOWN_MODE = "dso_unknown_mode"  # a garbled DSO state: the comm-loss limit applies
    DSO_LIMIT = "dso_limit"  # the DSO's dimming order
    BMS_LIMIT = "bms_limit"  # the BMS's charge/discharge power limit binds
    BMS_CURRENT_LIMIT = "bms_current_limit"  # the BMS's current limit × pack voltage binds
    INVERTER_RATING = "inverter_rating"  # the configured inverter rating binds
    SOC_WINDOW = "soc_window"  # SoC at or beyond the configured window
    FEEDIN_LIMIT = "feedin_limit"  # feed-in limitation binds at the grid point
    GRID_LIMIT_IMPORT = "grid_limit_import"  # the grid connection's import limit binds
    GRID_LIMIT_EXPORT = "grid_limit_export"  # the grid connection's export limit binds
    PV_CURTAILMENT = "pv_curtailment"  # export the battery cannot absorb: the PV inverter must shed it
    INTERNAL_ERROR = "internal_error"  # the decision itself failed
    REALTIME_FAILED = "realtime_failed"  # the real-time layer raised: 0 W requested
    PCS_WRITE_FAILED = "pcs_write_failed"  # the PCS write failed every attempt

    @property
    def blocks_health(self) -> bool:
        """Whether the loop counts as unhealthy (no watchdog petting) while this reason is active."""
        return self in _BLOCKS_HEALTH

    @property
    def awaiting_input(self) -> bool:
        """Whether this reason only means an input has not arrived (yet)."""
        return self in _AWAITING_INPUT

    @property
    def category(self) -> str:
        """The notification category of a "limited" decision with this reason."""
        return _CATEGORY.get(self, "safety")


_AWAITING_INPUT = frozenset({ReasonCode.STALE_INPUT, ReasonCode.DEVICE_OFFLINE})
_BLOCKS_HEALTH = _AWAITING_INPUT | {ReasonCode.INTERNAL_ERROR, ReasonCode.REALTIME_FAILED,
                                    ReasonCode.PCS_WRITE_FAILED}
_CATEGORY = {ReasonCode.DSO_LIMIT: "dso", ReasonCode.FEEDIN_LIMIT: "feedin"}
# When a limited decision has reasons of several categories, the first of these present wins.
CATEGORY_PRIORITY = ("dso", "feedin")


@dataclass(frozen=True)
class Reason:
    """One active reason: its code, the text people read and structured values (not compared by hash)."""

    code: ReasonCode
    message: str
    detail: Mapping[str, DetailValue] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        return self.message


def limited_category(reasons: Iterable[Reason]) -> str:
    """The notification category of a "limited" decision: `dso`, else `feedin`, else `safety`."""
    present = {r.code.category for r in reasons}
    return next((c for c in CATEGORY_PRIORITY if c in present), "safety")
