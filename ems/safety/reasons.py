"""Why the safety side decided what it did: typed reasons instead of texts to match.

A `Reason` carries a `ReasonCode` (what code branches on: the safety loop's health and notification
categories, the pages), a `message` for people and, where it helps, structured `detail` values (the
point, the device, the limit in W ...). Each code knows what the loop needs of it:

- `blocks_health`: the watchdogs are not petted while such a reason is active (an input unknown, an
  internal error, a failed real-time layer or PCS write);
- `awaiting_input`: the reason only says an input is not there yet (a stale or missing reading, an
  offline device): the first cycle after start is then safe, expected and no alarm;
- `category`: the notification category of a "limited" decision (`dso`, `feedin` or `safety`);
- `words`: what the reason means in words a site owner understands (a msgid, translated for the reader;
  `reason_words`). The `message` stays the technical text — point, device, limit — for logs, the monitoring
  page and a notification's detail.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Mapping, Sequence, Union

from .. import i18n

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

    @property
    def words(self) -> str:
        """The reason in words (an English msgid; `i18n.render` it in the reader's language)."""
        return _WORDS[self]


_AWAITING_INPUT = frozenset({ReasonCode.STALE_INPUT, ReasonCode.DEVICE_OFFLINE})
_BLOCKS_HEALTH = _AWAITING_INPUT | {ReasonCode.INTERNAL_ERROR, ReasonCode.REALTIME_FAILED,
                                    ReasonCode.PCS_WRITE_FAILED}
_CATEGORY = {ReasonCode.DSO_LIMIT: "dso", ReasonCode.FEEDIN_LIMIT: "feedin"}
_WORDS = {
    ReasonCode.POWER_CONTROL_DISABLED: i18n.mark("power control is off"),
    ReasonCode.DEVICE_OFFLINE: i18n.mark("a device does not answer"),
    ReasonCode.STALE_INPUT: i18n.mark("a reading it needs is missing or out of date"),
    ReasonCode.SITE_POWER_OUT_OF_RANGE: i18n.mark("a measurement is out of range"),
    ReasonCode.INVALID_REQUEST: i18n.mark("a measurement is out of range"),
    ReasonCode.BMS_ALARM: i18n.mark("the battery reports an alarm"),
    ReasonCode.INSULATION: i18n.mark("the insulation resistance is too low"),
    ReasonCode.TEMPERATURE: i18n.mark("the battery is too hot"),
    ReasonCode.DSO_TRIP: i18n.mark("the grid operator has ordered a shutdown"),
    ReasonCode.DSO_UNKNOWN_MODE: i18n.mark("the grid operator's box cannot be read"),
    ReasonCode.DSO_LIMIT: i18n.mark("the grid operator limits the power"),
    ReasonCode.BMS_LIMIT: i18n.mark("the battery management allows no more power"),
    ReasonCode.BMS_CURRENT_LIMIT: i18n.mark("the battery management allows no more current"),
    ReasonCode.INVERTER_RATING: i18n.mark("the inverter's rated power is reached"),
    ReasonCode.SOC_WINDOW: i18n.mark("the battery is at the charge level limit set for it"),
    ReasonCode.FEEDIN_LIMIT: i18n.mark("the feed-in limit applies"),
    ReasonCode.GRID_LIMIT_IMPORT: i18n.mark("the grid connection's import limit is reached"),
    ReasonCode.GRID_LIMIT_EXPORT: i18n.mark("the grid connection's export limit is reached"),
    ReasonCode.PV_CURTAILMENT: i18n.mark("the PV output has to be reduced"),
    ReasonCode.INTERNAL_ERROR: i18n.mark("the EMS hit an internal error"),
    ReasonCode.REALTIME_FAILED: i18n.mark("the EMS hit an internal error"),
    ReasonCode.PCS_WRITE_FAILED: i18n.mark("the inverter does not accept setpoints"),
}
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

    @property
    def words(self) -> i18n.Msg:
        """What it means, for the reader to translate (`.render(lang)`)."""
        return i18n.Msg(self.code.words)


def reason_words(codes: Sequence[str], lang: str) -> list[str]:
    """The JSON's `reason_codes` in words in `lang`, one per code (an unknown code as itself): what a page
    shows a site owner beside the technical `reasons`."""
    known = {c.value: c for c in ReasonCode}
    return [i18n.render(known[c].words, None, lang) if c in known else str(c) for c in codes]


def why(reasons: Iterable[Reason]) -> i18n.Msg:
    """The reasons in words, each meaning once: a parameter of a notification ("because {why}")."""
    words = list(dict.fromkeys(r.code.words for r in reasons))
    return i18n.Msg("{list}", {"list": [i18n.Msg(w) for w in words]})


def limited_category(reasons: Iterable[Reason]) -> str:
    """The notification category of a "limited" decision: `dso`, else `feedin`, else `safety`."""
    present = {r.code.category for r in reasons}
    return next((c for c in CATEGORY_PRIORITY if c in present), "safety")
