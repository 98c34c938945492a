"""Which BMS alarms make the battery unsafe to run: severity classification of `battery.alarms`.

Severities are the device profiles' (`ems.devices.profile.SEVERITIES`): info < warning < critical <
shutdown. An alarm entry is either a text, or something that carries its own severity (a mapping with
`severity` and `text`, or an object with those attributes, e.g. a profile's `AlarmDef`). Texts are
looked up in `KNOWN_ALARM_SEVERITY`, built from `STANDARD_ALARMS` — the plant-level alarm
vocabulary a source without severities of its own reports (the built-in simulator's BMS uses these
bits and texts; the faults that open its contactors are `shutdown`); an unknown text is a
`warning` (notified, not a stop). An entry that
declares a severity this module does not know is taken as `critical`: a garbled declaration must
not pass as harmless.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

Severity = Literal["info", "warning", "critical", "shutdown"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2, "shutdown": 3}

# bit → (text, severity): the alarm word of a BMS that reports texts without severities.
STANDARD_ALARMS: dict[int, tuple[str, Severity]] = {
    0: ("over-temperature (derating)", "warning"),
    1: ("under-temperature (derating)", "warning"),
    2: ("SoC low", "warning"),
    3: ("SoC high", "warning"),
    4: ("insulation resistance low", "shutdown"),
    5: ("over-temperature shutdown", "shutdown"),
}
KNOWN_ALARM_SEVERITY: dict[str, Severity] = {text: severity for text, severity in STANDARD_ALARMS.values()}


def alarm_text(alarm: Any) -> str:
    if isinstance(alarm, Mapping):
        return str(alarm.get("text") or alarm.get("name") or alarm)
    text = getattr(alarm, "text", None)
    return str(text) if text is not None else str(alarm)


def alarm_severity(alarm: Any) -> Severity:
    """The severity of one alarm entry (see the module docstring for the rules)."""
    if isinstance(alarm, str):
        return KNOWN_ALARM_SEVERITY.get(alarm, "warning")
    declared = alarm.get("severity") if isinstance(alarm, Mapping) else getattr(alarm, "severity", None)
    for severity in ("info", "warning", "critical", "shutdown"):
        if declared == severity:
            return severity
    return "critical"


def safety_alarms(alarms: Any, threshold: Severity) -> tuple[str, ...] | None:
    """`"text (severity)"` for every alarm at or above `threshold`; None when the list is unreadable."""
    if isinstance(alarms, (str, bytes)) or not isinstance(alarms, (tuple, list, frozenset, set)):
        return None
    floor = SEVERITY_RANK.get(threshold, SEVERITY_RANK["critical"])
    found = []
    for alarm in alarms:
        severity = alarm_severity(alarm)
        if SEVERITY_RANK[severity] >= floor:
            found.append(f"{alarm_text(alarm)} ({severity})")
    return tuple(found)
