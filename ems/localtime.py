"""The site's wall clock: its time zone and the `HH:MM` daily windows that tariffs, feed-in rules and
forecasts are written in (DSOs publish "17:00–19:00", households cook at noon local time).

One home for these so that every module converts an instant to the same local minute: the zone is
`site.timezone` (default Europe/Vienna); modules receive a `ZoneInfo` from `site_zone()`, never a name.
"""
from __future__ import annotations

import math
from datetime import datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from . import i18n

DEFAULT_TIMEZONE = "Europe/Vienna"
MINUTES_PER_DAY = 24 * 60


@lru_cache(maxsize=16)
def site_zone(name: str = DEFAULT_TIMEZONE) -> ZoneInfo:
    """The ZoneInfo for an IANA name; ValueError naming it when the system has no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Vienna)") from None


def zone_problem(name: str) -> i18n.Msg | None:
    """Why `name` is not a usable time zone, or None (for config validation)."""
    try:
        site_zone(name)
    except ValueError:
        near = sorted(z for z in available_timezones() if z.lower().endswith(name.lower().rsplit("/", 1)[-1]))[:3]
        if near:
            return i18n.Msg(i18n.mark("unknown time zone {name} (an IANA name such as Europe/Vienna; did you mean "
                                      "{near}?)"), {"name": repr(name[:80]), "near": near})
        return i18n.Msg(i18n.mark("unknown time zone {name} (an IANA name such as Europe/Vienna)"),
                        {"name": repr(name[:80])})
    return None


def hhmm_to_minutes(text: str) -> int:
    """'17:30' → 1050; '24:00' → 1440 (the end of the day). ValueError names the bad text."""
    hours, sep, minutes = str(text).partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"time {text!r} is not HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > MINUTES_PER_DAY:
        raise ValueError(f"time {text!r} is not between 00:00 and 24:00")
    return value


def in_daily_window(minute: float, start: str, end: str) -> bool:
    """Whether a local minute of the day lies in [start, end); start > end wraps past midnight.

    start == end is an empty window (write 00:00–24:00 for the whole day).
    """
    lo, hi = hhmm_to_minutes(start), hhmm_to_minutes(end)
    if lo < hi:
        return lo <= minute < hi
    if lo > hi:
        return minute >= lo or minute < hi
    return False


def minute_of_day(ts: float, zone: ZoneInfo) -> int:
    """The local wall-clock minute (0–1439) of the instant `ts` (epoch s)."""
    local = datetime.fromtimestamp(ts, zone)
    return local.hour * 60 + local.minute


def to_minutes_of_day(local_time: time | float) -> float:
    """A local wall-clock time as minutes since midnight (seconds count as fractions of a minute).

    Anything unreadable is NaN: "time unknown", which the feed-in rules read restrictively.
    """
    if isinstance(local_time, time):
        return local_time.hour * 60 + local_time.minute + (local_time.second + local_time.microsecond / 1e6) / 60
    if isinstance(local_time, bool) or not isinstance(local_time, (int, float)):
        return math.nan
    return float(local_time)
