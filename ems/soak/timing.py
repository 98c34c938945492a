"""The soak site's timing, and the defaults the CLI shows without importing the runtime."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_START = "2024-04-01T00:00:00+02:00"
TRANSPORTS = ("loopback", "tcp")


@dataclass(frozen=True)
class SoakTiming:
    """How often each device is polled, the safety period, the plant step, the history cadence.

    Every reaction-time bound the oracle applies is derived from these figures, so a slower cadence
    is judged by looser bounds, never by the same ones. The shipped demo polls the DSO box every
    0.5 s, the rest every 1 s, with a 0.5 s safety period: a month of that is ~50 million Modbus
    requests and about 3 CPU-hours of the EMS's own Python (profiled: the pollers' decode-and-publish
    and the safety loop's PCS writes with read-back are most of it), not minutes. The month's
    defaults therefore keep the DSO box at 1 s - its trip is what a grid operator asks about, and the
    poller wakes the safety loop on every change - and run the rest at a residential gateway's slow
    end: meter, BMS and PCS every 5 s (inside the 10 s stale timeout), a 5 s safety period, a 5 s
    plant step. `ems soak --timing` runs any other cadence (e.g. the demo's) over fewer days.
    """

    dso_poll_s: float = 1.0
    meter_poll_s: float = 5.0
    bms_poll_s: float = 5.0
    pcs_poll_s: float = 5.0
    device_timeout_s: float = 1.0
    safety_period_s: float = 5.0
    plant_step_s: float = 5.0
    history_sample_s: float = 10.0
    history_flush_s: float = 300.0
    refit_interval_h: float = 24.0
