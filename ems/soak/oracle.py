"""The soak's oracle: judges, from the plant's own truth only, whether any grid or battery limit was broken.

It never reads the EMS - not its plant state, decisions, logs or history. Its inputs are what the
plant physically did (`world.PlantTruth`: the PCS's real output, the grid point, the battery's own
limits and SoC, the DSO box's state), the world's own record of what was done to it (the fault
schedule, the EMS process up or killed) and the site's contract (the config: connection and feed-in
limits, ratings, SoC window, §14a minimum) - as a grid operator or an installer auditing the site would.

Allowed reaction times come from the config, never from measurements. With P(x) the poll interval of
device x, TO(x) its timeout, S the safety period, F the PCS's own comm-loss timeout, D the plant step
and M = 100 ms (the bound the issue sets on top of one poll interval):

- `dso_trip`: the box in trip → the PCS at 0 W (±1 W) and disabled (remote control released).
  Allowed: P(dso) + M after the trip.
- `dso_limit`: the box at L % → discharge ≤ L % of the rating, charge ≤ max(L % of the rating, the §14a
  minimum), +1 W. Allowed: P(dso) + M after the order.
- `bms_stop`: the BMS demands a stop (an alarm at `safety_alarm_severity` or above, or its contactors
  open) → 0 W. Allowed: P(bms) + S + M.
- `input_loss`: the BMS, the meter or the DSO box silent, garbled or refusing (a required input lost)
  → 0 W (the DSO box: its comm-loss limit). Allowed: P(x) + TO(x) + S + M after the loss.
- `input_loss` of a frozen meter (`meter_stale`: it answers, but its readings hang): the grid power is
  then no measurement either → 0 W. It shows only as a reading that stops changing, so the EMS can tell
  it once the stale timeout T has passed since the last reading that moved: allowed P(meter) + T + S + M.
- `pcs_fallback`: the EMS cannot reach the PCS (its link faulted, or the EMS process dead) → the PCS's
  own fallback has it at 0 W. Allowed: F + D + M after the loss.
- `grid_import`: import ≤ the connection limit (+ the grid meter's accuracy, 1 % of the limit: class
  1, as the SDM630), unless the battery already discharges all it may. An excursion may last
  P(meter) + P(pcs) + S + M: the safety rule computes the site's power as grid + battery from two
  devices polled apart, so a change may need the next reading of both, then a cycle.
- `grid_export`: export ≤ min(feed-in limit, connection feed-in rating) (+ 1 % as above), unless the
  battery already charges all it may. As grid_import.
- `bms_limits`: the PCS's power within the BMS's own charge and discharge limits (+ half the BMS
  register's resolution). An excursion may last P(bms) + S + M.
- `soc_window`: no discharge below min SoC, no charge above max SoC (± half the BMS's SoC
  resolution). As bms_limits.
- `ratings`: the PCS's power within the configured inverter ratings (+1 W; a config change counts from
  its instant). An excursion may last S + M.
- `pcs_heartbeat_lapse`: the PCS never falls back while its EMS is up and the link is healthy. No
  allowance, once the link had F + D + M + the pollers' reconnect backoff cap (30 s) + TO + P to
  come back.

While the EMS does not control the PCS (dead, link faulted, or restarted but not yet heard by the PCS),
excursions of the last five checks may last up to the fallback's bound F + D + M instead: nothing but
the PCS's own fallback can act then. "All it may" (the battery's capability) is the least of the BMS's
own limit, the rating, the DSO's allowance and the SoC window; 0 while a safe state is demanded.

Two kinds of result: *violations* (each excursion or missed deadline once, with its time, magnitude and
the faults in force) and *reaction times* (fault start → the first instant the plant is in the state
the fault demands; 0 when it already was). Findings that are no violation - export the battery could
not absorb (the site would need PV curtailment, which the EMS has no actuator for), charging under a
DSO order that the EMS's own PCS limit-% write blocks below the §14a minimum - are counted separately.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from ..config.schema import BessConfig, EmsConfig, FeedinLimitationConfig
from ..devices.poller import BACKOFF_MAX_S
from ..devices.profile import Profile
from .faults import Fault
from .world import PlantTruth

log = logging.getLogger(__name__)

MARGIN_S = 0.1
POWER_TOL_W = 1.0
GRID_METER_ACCURACY = 0.01  # class 1 (EN 62053-21), as the Eastron SDM630: what the grid point can tell apart
INPUT_DEVICES = ("bms", "meter", "dso")
LINK_FAULTS = ("device_silent", "device_exception", "device_garbage")
EXCURSION_CHECKS = ("grid_import", "grid_export", "bms_limits", "soc_window", "ratings")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2, "shutdown": 3}


def _register_resolution(profile: Profile | None, point: str, default: float) -> float:
    """The engineering step of the register feeding `point` (its scale), e.g. 100 W or 1 %."""
    if profile is None:
        return default
    regs = profile.point_registers().get(point)
    if not regs:
        return default
    reg = regs[0]
    return abs(reg.scale) if reg.type not in ("float32", "float64") else 0.0


@dataclass(frozen=True)
class OracleSettings:
    """The contract and the allowed times, from the config (see the module docstring's table)."""

    rated_w: float
    capacity_kwh: float
    bess: BessConfig
    feedin: FeedinLimitationConfig
    pv_peak_kw: float
    max_import_w: float
    max_feedin_w: float
    p14a_w: float
    dso_comm_loss_limit_pct: float
    safety_alarm_rank: int
    zone: ZoneInfo
    t_dso_s: float
    t_bms_s: float
    t_grid_s: float
    t_cfg_s: float
    t_fallback_s: float
    t_loss_s: Mapping[str, float]
    t_frozen_s: float
    bms_tol_w: float
    soc_tol_pct: float
    roles: Mapping[str, str]  # role -> device name
    reconnect_s: float  # the longest a lost link may take to come back: the pollers' backoff cap + timeout

    @classmethod
    def from_config(cls, cfg: EmsConfig, profiles: Mapping[str, Profile],
                    pcs_comm_loss_timeout_s: float) -> "OracleSettings":
        devices = {d.role: d for d in cfg.modbus if d.enabled}
        pc = cfg.power_control
        s = pc.safety_period_s
        poll = {role: d.poll_interval_s for role, d in devices.items()}
        timeout = {role: d.timeout_s for role, d in devices.items()}
        bms_profile = profiles.get(devices["bms"].profile) if "bms" in devices else None
        grid = cfg.grid_connection
        return cls(
            rated_w=1000.0 * max(cfg.bess.max_charge_power_kw, cfg.bess.max_discharge_power_kw),
            capacity_kwh=cfg.bess.capacity_kwh, bess=cfg.bess, feedin=cfg.feedin_limitation,
            pv_peak_kw=cfg.forecast.pv_peak_kwp, max_import_w=1000.0 * grid.max_power_kw,
            max_feedin_w=1000.0 * (grid.max_feedin_kw if grid.max_feedin_kw is not None else grid.max_power_kw),
            p14a_w=1000.0 * pc.min_grid_charge_kw_under_dso_limit,
            dso_comm_loss_limit_pct=pc.dso_comm_loss_limit_pct,
            safety_alarm_rank=SEVERITY_RANK[pc.safety_alarm_severity],
            zone=ZoneInfo(cfg.site.timezone),
            t_dso_s=poll.get("dso", 0.0) + MARGIN_S,
            t_bms_s=poll.get("bms", 0.0) + s + MARGIN_S,
            t_grid_s=poll.get("meter", 0.0) + poll.get("pcs", 0.0) + s + MARGIN_S,
            t_cfg_s=s + MARGIN_S,
            t_fallback_s=pcs_comm_loss_timeout_s + cfg.simulator.step_s + MARGIN_S,
            t_loss_s={role: poll[role] + timeout[role] + s + MARGIN_S for role in poll},
            t_frozen_s=poll.get("meter", 0.0) + pc.stale_timeout_s + s + MARGIN_S,
            bms_tol_w=_register_resolution(bms_profile, "battery.max_charge_power_w", 0.0) / 2.0 + POWER_TOL_W,
            soc_tol_pct=_register_resolution(bms_profile, "battery.soc_pct", 0.0) / 2.0 + 0.01,
            roles={role: d.name for role, d in devices.items()},
            reconnect_s=BACKOFF_MAX_S + max(timeout.values(), default=0.0) + max(poll.values(), default=0.0))

    def allowed_s(self) -> dict[str, Any]:
        """The allowed reaction times, for the report."""
        return {"dso_trip": self.t_dso_s, "dso_limit": self.t_dso_s, "bms_stop": self.t_bms_s,
                "input_loss": dict(self.t_loss_s), "meter_frozen": self.t_frozen_s, "pcs_fallback": self.t_fallback_s,
                "grid_import": self.t_grid_s, "grid_export": self.t_grid_s, "bms_limits": self.t_bms_s,
                "soc_window": self.t_bms_s, "ratings": self.t_cfg_s}


def export_limit_w(feedin: FeedinLimitationConfig, local_minute: float, pv_peak_kw: float,
                   grid_feedin_w: float) -> float:
    """The export limit at the grid point: the connection's feed-in rating, and the feed-in rule.

    The oracle's own reading of the config (not the EMS's code): fixed % at all times, or the most
    restrictive dynamic rule in force, the fixed % outside every rule; % of the PV peak with PV
    integration, else of the connection's feed-in rating.
    """
    if not feedin.enabled or feedin.mode == "off":
        return grid_feedin_w
    pct = feedin.fixed_limit_pct
    if feedin.mode == "dynamic":
        matching = []
        for rule in feedin.dynamic_rules:
            start, end = (_minutes(rule.start), _minutes(rule.end))
            inside = start <= local_minute < end if start <= end else (local_minute >= start or local_minute < end)
            if inside:
                matching.append(rule.limit_pct)
        if matching:
            pct = min(matching)
    reference_w = 1000.0 * pv_peak_kw if feedin.pv_integration_enabled else grid_feedin_w
    return min(grid_feedin_w, reference_w * max(0.0, min(100.0, pct)) / 100.0)


def _minutes(hhmm: str) -> int:
    hh, mm = hhmm.split(":")
    return int(hh) * 60 + int(mm)


@dataclass
class Violation:
    check: str
    ts: float  # when the limit was first broken (excursions) or the deadline passed (requirements)
    since_ts: float  # when the excursion or requirement began
    duration_s: float  # how long the plant stayed outside after `ts` (until seen back, or the soak's end)
    allowed_s: float
    magnitude: float  # the worst excess seen (W, or % for the SoC window)
    faults: tuple[str, ...]  # the faults in force when it began
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "ts": round(self.ts, 3), "since_ts": round(self.since_ts, 3),
                "duration_s": round(self.duration_s, 3), "allowed_s": round(self.allowed_s, 3),
                "magnitude": round(self.magnitude, 2), "faults": list(self.faults), "detail": self.detail}


@dataclass
class _Episode:
    """One requirement or excursion in progress."""

    check: str
    since: float
    allowed: float
    faults: tuple[str, ...]
    peak: float = 0.0
    first_ok: float | None = None  # requirements: when the plant first complied
    violation: Violation | None = None  # the one open (not yet back within the limit), if any
    fault_id: int | None = None
    last_excess: float = 0.0  # at the previous observation: the plant held it until this one
    last_ts: float = 0.0
    violations: int = 0


@dataclass
class Reaction:
    fault_id: int
    kind: str
    check: str
    start_ts: float
    reaction_s: float | None  # None: never complied before the requirement ended
    already: bool
    allowed_s: float

    def to_json(self) -> dict[str, Any]:
        return {"fault": self.fault_id, "kind": self.kind, "check": self.check, "start_ts": round(self.start_ts, 3),
                "reaction_s": None if self.reaction_s is None else round(self.reaction_s, 4),
                "already": self.already, "allowed_s": round(self.allowed_s, 3)}


@dataclass
class _Probe:
    """A foreground fault waiting for the plant to reach the state it demands (for its reaction time)."""

    fault: Fault
    check: str
    allowed: float
    predicate: Callable[[PlantTruth], bool]


@dataclass
class Findings:
    """What the oracle saw that is no violation of the EMS's contract, but an installer should know."""

    export_beyond_battery_s: float = 0.0
    export_beyond_battery_kwh: float = 0.0
    export_beyond_battery_peak_w: float = 0.0
    # A DSO order in force, the EMS asking the PCS to charge more than the PCS's own cap (the order's %)
    # lets through, the cap below what §14a EnWG keeps available: charging the rules allow, blocked.
    charge_blocked_under_dso_limit_s: float = 0.0
    charge_blocked_under_dso_limit_kwh: float = 0.0
    pcs_fallback_s: float = 0.0
    ems_down_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 3) for k, v in self.__dict__.items()}


class Oracle:
    """Feed it `observe(truth)` at every plant step and change, and the world's own events."""

    def __init__(self, settings: OracleSettings, start_ts: float):
        self.s = settings
        self.start_ts = start_ts
        self.bess = settings.bess
        self.feedin = settings.feedin
        self.violations: list[Violation] = []
        self.on_violation: Callable[[Violation], None] | None = None  # e.g. to capture its timeline
        self.reactions: list[Reaction] = []
        self.findings = Findings()
        self.observations = 0
        self.excursions: dict[str, list[float]] = {c: [] for c in EXCURSION_CHECKS}  # durations, for the report
        self._faults: dict[int, Fault] = {}
        self._fault_ts: dict[int, float] = {}
        self._recent_pcs_loss_ts = -math.inf  # when the EMS last lost the PCS (fault or kill), or regained it
        self._requirements: dict[str, _Episode] = {}
        self._excursions: dict[str, _Episode] = {}
        self._probes: list[_Probe] = []
        self._ems_up = False
        self._ems_up_ts = -math.inf
        self._ems_down_ts: float | None = start_ts
        self._heard_since_boot = False
        self._last: PlantTruth | None = None
        self._dso_state: tuple[str, float] = ("normal", 100.0)
        self._dso_since = start_ts
        self._bms_stop_since: float | None = None
        self._lapse: _Episode | None = None
        self._remembered: dict[str, Any] = {}
        self._interval = 0.0

    # -- the world's events ---------------------------------------------------------------------
    def fault_started(self, fault: Fault, ts: float) -> None:
        self._faults[fault.id] = fault
        self._fault_ts[fault.id] = ts
        if self._pcs_link_fault(fault):
            self._recent_pcs_loss_ts = ts
        probe = self._probe_for(fault)
        if probe is not None:
            self._probes.append(probe)

    def fault_ended(self, fault: Fault, ts: float) -> None:
        self._faults.pop(fault.id, None)
        if self._pcs_link_fault(fault):
            self._recent_pcs_loss_ts = ts
        for probe in [p for p in self._probes if p.fault.id == fault.id]:
            self._probes.remove(probe)
            self.reactions.append(Reaction(fault.id, fault.kind, probe.check, self._fault_ts[fault.id], None, False,
                                           probe.allowed))
        if self._last is not None:
            self.observe(replace(self._last, ts=ts))

    def ems_up(self, ts: float) -> None:
        if self._ems_down_ts is not None:
            self.findings.ems_down_s += max(0.0, ts - self._ems_down_ts)
        self._ems_up, self._ems_up_ts, self._ems_down_ts = True, ts, None
        self._heard_since_boot = False

    def ems_down(self, ts: float, killed: bool) -> None:
        self._ems_up = False
        self._ems_down_ts = ts
        if killed:
            self._recent_pcs_loss_ts = ts

    def config_changed(self, cfg: EmsConfig, ts: float) -> None:
        """A user changed the settings: the new contract applies at once (ratings) and the excursion
        logic gives the EMS its reaction time from this instant."""
        self.bess = cfg.bess
        self.feedin = cfg.feedin_limitation
        if self._last is not None:
            self.observe(replace(self._last, ts=ts))

    def remember_config(self, section: str, data: Any) -> None:
        self._remembered.setdefault(section, data)

    def recall_config(self, section: str, default: Any) -> Any:
        return self._remembered.pop(section, default)

    # -- judging --------------------------------------------------------------------------------
    def observe(self, t: PlantTruth) -> None:
        self.observations += 1
        last = self._last
        self._interval = max(0.0, t.ts - last.ts) if last is not None else 0.0
        self._last = t
        now = t.ts
        if self._ems_up and not self._heard_since_boot and t.pcs_contact_ts is not None \
                and t.pcs_contact_ts >= self._ems_up_ts:
            self._heard_since_boot = True
        self._requirements_at(t)
        control = self._in_control(now)
        mandated = any(ep.check in ("dso_trip", "bms_stop", "input_loss", "pcs_fallback")
                       for ep in self._requirements.values())
        self._excursions_at(t, control, mandated)
        self._lapse_at(t)
        for probe in list(self._probes):
            if probe.predicate(t):
                self._probes.remove(probe)
                start = self._fault_ts[probe.fault.id]
                self.reactions.append(Reaction(probe.fault.id, probe.fault.kind, probe.check, start,
                                               max(0.0, now - start), now <= start, probe.allowed))

    def _pcs_link_fault(self, fault: Fault) -> bool:
        return fault.kind in LINK_FAULTS + ("reconnect_storm",) and fault.params.get("device") == self.s.roles.get("pcs")

    def _in_control(self, now: float) -> bool:
        """The EMS can steer the PCS: up, its link healthy, and heard by the PCS since it came up."""
        if not self._ems_up or not self._heard_since_boot:
            return False
        return not any(self._pcs_link_fault(f) for f in self._faults.values())

    def _labels(self) -> tuple[str, ...]:
        labels = tuple(f.label for f in self._faults.values())
        if not self._ems_up:
            labels += ("EMS down",)
        return labels

    # requirements: deadlines after an event --------------------------------------------------------
    def _requirements_at(self, t: PlantTruth) -> None:
        now = t.ts
        wanted: dict[str, tuple[float, float, Callable[[PlantTruth], float], int | None]] = {}
        dso = (t.dso_mode, t.dso_limit_pct)
        if dso != self._dso_state:
            self._dso_state, self._dso_since = dso, now
        if t.dso_mode == "trip":
            wanted["dso_trip"] = (self._dso_since, self.s.t_dso_s,
                                  lambda x: max(abs(x.pcs_w) - POWER_TOL_W, 1.0 if x.pcs_enabled else 0.0), None)
        elif t.dso_mode == "limit":
            share = self.s.rated_w * t.dso_limit_pct / 100.0
            charge = max(share, self.s.p14a_w)
            wanted["dso_limit"] = (self._dso_since, self.s.t_dso_s,
                                   lambda x: max(x.pcs_w - share, -x.pcs_w - charge) - POWER_TOL_W, None)
            blocked_w = charge_blocked_w(t)
            if blocked_w > POWER_TOL_W and t.pcs_cap_w + POWER_TOL_W < min(charge, 1000.0 * self.bess.max_charge_power_kw):
                dt = self._dt(now)
                self.findings.charge_blocked_under_dso_limit_s += dt
                self.findings.charge_blocked_under_dso_limit_kwh += blocked_w * dt / 3.6e6
        if t.bms_stop:
            if self._bms_stop_since is None:
                self._bms_stop_since = now
            wanted["bms_stop"] = (self._bms_stop_since, self.s.t_bms_s, lambda x: abs(x.pcs_w) - POWER_TOL_W, None)
        else:
            self._bms_stop_since = None
        for fault in self._faults.values():
            device = fault.params.get("device")
            if fault.kind in LINK_FAULTS and device in (self.s.roles.get(r) for r in INPUT_DEVICES):
                role = next(r for r in INPUT_DEVICES if self.s.roles.get(r) == device)
                allowance = self.s.rated_w * self.s.dso_comm_loss_limit_pct / 100.0 if role == "dso" else 0.0
                measure = _beyond(allowance)
                wanted[f"input_loss:{role}"] = (self._fault_ts[fault.id], self.s.t_loss_s[role], measure, fault.id)
            elif fault.kind == "meter_stale":  # the meter answers, but its grid power is no measurement
                wanted["input_loss:meter"] = (self._fault_ts[fault.id], self.s.t_frozen_s, _beyond(0.0), fault.id)
        pcs_lost = [f for f in self._faults.values() if f.kind in LINK_FAULTS and self._pcs_link_fault(f)]
        if pcs_lost:
            wanted["pcs_fallback"] = (self._fault_ts[pcs_lost[0].id], self.s.t_fallback_s,
                                      lambda x: abs(x.pcs_w) - POWER_TOL_W, pcs_lost[0].id)
        elif not self._ems_up and self._ems_down_ts is not None:
            wanted["pcs_fallback"] = (self._ems_down_ts, self.s.t_fallback_s, lambda x: abs(x.pcs_w) - POWER_TOL_W, None)

        for key in [k for k in self._requirements if k not in wanted]:
            ended = self._requirements.pop(key)
            self._judge(ended, 0.0, now, ended.since + ended.allowed, key)  # it ended: judged up to now
        for key, (since, allowed, measure, fault_id) in wanted.items():
            previous = self._requirements.get(key)
            if previous is not None and previous.since == since:
                ep = previous
            else:
                if previous is not None:
                    self._judge(previous, 0.0, now, previous.since + previous.allowed, key)
                ep = _Episode(key.split(":")[0], since, allowed, self._labels(), fault_id=fault_id)
                self._requirements[key] = ep
            excess = measure(t)
            if excess <= 0.0 and ep.first_ok is None:
                ep.first_ok = now
            self._judge(ep, excess, now, since + allowed, key)

    def _judge(self, ep: _Episode, excess: float, now: float, deadline: float, what: str) -> None:
        """The plant's state is piecewise constant between observations (the PCS changes its output
        only when a command arrives, and every command is observed): what was seen at the previous
        observation held until `now`. Outside the requirement past its deadline = a violation, from the
        later of the deadline and that observation; it lasts until the plant is seen back inside."""
        if ep.last_excess > 0.0 and now > deadline and ep.violation is None:
            self._open(ep, max(deadline, ep.last_ts), ep.last_excess, what)
        if excess > 0.0:
            if now >= deadline and ep.violation is None:
                self._open(ep, now, excess, what)
            if ep.violation is not None:
                ep.violation.magnitude = max(ep.violation.magnitude, excess)
        elif ep.violation is not None:
            ep.violation.duration_s = now - ep.violation.ts
            ep.violation = None
        ep.last_excess, ep.last_ts = excess, now

    def _open(self, ep: _Episode, ts: float, excess: float, what: str) -> None:
        ep.violations += 1
        v = Violation(ep.check, ts, ep.since, -1.0, ep.allowed, excess, ep.faults,
                      f"{what}: {excess:.1f} beyond the limit {ts - ep.since:.3f} s after it began "
                      f"(allowed {ep.allowed:.3f} s)")
        ep.violation = v
        self._record(v)

    def _close(self, ep: _Episode, now: float) -> None:
        if ep.violation is not None and ep.violation.duration_s < 0:
            ep.violation.duration_s = now - ep.violation.ts

    # excursions: how long the plant may be outside a limit ---------------------------------------
    def _capability(self, t: PlantTruth, mandated: bool) -> tuple[float, float]:
        """(discharge, charge) the battery may do now under the contract (both >= 0): the least of the
        BMS's own limit, the rating, the DSO's allowance and the SoC window; 0 under a demanded stop."""
        if mandated:
            return 0.0, 0.0
        b = self.bess
        dis = min(t.bms_discharge_limit_w, 1000.0 * b.max_discharge_power_kw)
        cha = min(t.bms_charge_limit_w, 1000.0 * b.max_charge_power_kw)
        if t.dso_mode == "limit":
            share = self.s.rated_w * t.dso_limit_pct / 100.0
            dis, cha = min(dis, share), min(cha, max(share, self.s.p14a_w))
        if t.soc_pct <= b.min_soc_pct + self.s.soc_tol_pct:
            dis = 0.0
        if t.soc_pct >= b.max_soc_pct - self.s.soc_tol_pct:
            cha = 0.0
        return max(0.0, dis), max(0.0, cha)

    def _excursions_at(self, t: PlantTruth, control: bool, mandated: bool) -> None:
        b, s = self.bess, self.s
        dis_cap, cha_cap = self._capability(t, mandated)
        minute = self._local_minute(t.ts) if self.feedin.enabled and self.feedin.mode == "dynamic" else 0.0
        export_limit = export_limit_w(self.feedin, minute, s.pv_peak_kw, s.max_feedin_w)
        export_w = -t.grid_w
        excess_export = export_w - export_limit - max(POWER_TOL_W, GRID_METER_ACCURACY * export_limit)
        absorbable = cha_cap - max(0.0, -t.pcs_w) > POWER_TOL_W
        if excess_export > 0 and not absorbable:
            dt = self._dt(t.ts)
            self.findings.export_beyond_battery_s += dt
            self.findings.export_beyond_battery_kwh += excess_export * dt / 3.6e6
            self.findings.export_beyond_battery_peak_w = max(self.findings.export_beyond_battery_peak_w, excess_export)
        checks = {
            "grid_import": (t.grid_w - s.max_import_w * (1.0 + GRID_METER_ACCURACY)
                            if dis_cap - max(0.0, t.pcs_w) > POWER_TOL_W else 0.0, s.t_grid_s),
            "grid_export": (excess_export if absorbable else 0.0, s.t_grid_s),
            "bms_limits": (max(t.pcs_w - t.bms_discharge_limit_w, -t.pcs_w - t.bms_charge_limit_w) - s.bms_tol_w,
                           s.t_bms_s),
            "soc_window": (max(b.min_soc_pct - s.soc_tol_pct - t.soc_pct if t.pcs_w > POWER_TOL_W else 0.0,
                               t.soc_pct - b.max_soc_pct - s.soc_tol_pct if t.pcs_w < -POWER_TOL_W else 0.0),
                           s.t_bms_s),
            "ratings": (max(t.pcs_w - 1000.0 * b.max_discharge_power_kw, -t.pcs_w - 1000.0 * b.max_charge_power_kw)
                        - POWER_TOL_W, s.t_cfg_s),
        }
        now = t.ts
        for check, (excess, allowed) in checks.items():
            ep = self._excursions.get(check)
            if ep is None:
                if excess <= 0.0:
                    continue
                ep = _Episode(check, now, allowed if control else max(allowed, s.t_fallback_s), self._labels())
                self._excursions[check] = ep
            ep.peak = max(ep.peak, excess)
            self._judge(ep, excess, now, ep.since + ep.allowed, check)
            if excess <= 0.0:  # back within the limit: the excursion is over
                del self._excursions[check]
                self.excursions[check].append(now - ep.since)

    def _lapse_at(self, t: PlantTruth) -> None:
        """The PCS fell back although its EMS was up, in control and nothing cut the link lately."""
        if t.pcs_fallback:
            self.findings.pcs_fallback_s += self._dt(t.ts)
        # After a loss the EMS reconnects with its backoff (at most BACKOFF_MAX_S): the PCS may stay in its
        # fallback (safe) until then; only a lapse on a link that had time to come back counts.
        recovery_s = self.s.t_fallback_s + self.s.reconnect_s
        quiet = t.ts - self._recent_pcs_loss_ts > recovery_s and t.ts - self._ems_up_ts > recovery_s
        lapse = t.pcs_fallback and self._ems_up and quiet and \
            not any(self._pcs_link_fault(f) for f in self._faults.values())
        if lapse and self._lapse is None:
            v = Violation("pcs_heartbeat_lapse", t.ts, t.ts, -1.0, 0.0, 0.0, self._labels(),
                          "the PCS fell back to 0 W: its EMS stopped writing its heartbeat")
            self._lapse = _Episode("pcs_heartbeat_lapse", t.ts, 0.0, v.faults, violation=v)
            self._record(v)
        elif not lapse and self._lapse is not None:
            self._close(self._lapse, t.ts)
            self._lapse = None

    def _record(self, v: Violation) -> None:
        self.violations.append(v)
        log.warning("oracle: violation %s at %.3f (faults in force: %s): %s", v.check, v.ts,
                    ", ".join(v.faults) or "none", v.detail)
        if self.on_violation is not None:
            self.on_violation(v)

    # reaction probes ---------------------------------------------------------------------------
    def _probe_for(self, fault: Fault) -> _Probe | None:
        s, kind, p = self.s, fault.kind, fault.params
        zero = lambda x: abs(x.pcs_w) <= POWER_TOL_W
        if kind == "dso_trip":
            return _Probe(fault, "dso_trip", s.t_dso_s, lambda x: zero(x) and not x.pcs_enabled)
        if kind in ("dso_limit", "dso_14a"):
            share = s.rated_w * float(p["limit_pct"]) / 100.0
            charge = max(share, s.p14a_w)
            return _Probe(fault, "dso_limit", s.t_dso_s,
                          lambda x: x.pcs_w <= share + POWER_TOL_W and -x.pcs_w <= charge + POWER_TOL_W)
        if kind == "bms_alarm" and SEVERITY_RANK[str(p["severity"])] >= s.safety_alarm_rank:
            return _Probe(fault, "bms_stop", s.t_bms_s, zero)
        if kind == "bms_limit_drop":
            return _Probe(fault, "bms_limits", s.t_bms_s, lambda x: max(
                x.pcs_w - x.bms_discharge_limit_w, -x.pcs_w - x.bms_charge_limit_w) <= s.bms_tol_w)
        if kind in LINK_FAULTS:
            role = next((r for r, name in s.roles.items() if name == p.get("device")), None)
            if role == "pcs":
                return _Probe(fault, "pcs_fallback", s.t_fallback_s, zero)
            if role in INPUT_DEVICES:
                return _Probe(fault, "input_loss", s.t_loss_s[role], zero)
        if kind == "meter_stale":
            return _Probe(fault, "input_loss", s.t_frozen_s, zero)
        if kind == "ems_kill":
            return _Probe(fault, "pcs_fallback", s.t_fallback_s, zero)
        if kind == "config_bess":
            ch, dis = 1000.0 * float(p["max_charge_power_kw"]), 1000.0 * float(p["max_discharge_power_kw"])
            return _Probe(fault, "ratings", s.t_cfg_s,
                          lambda x: x.pcs_w <= dis + POWER_TOL_W and -x.pcs_w <= ch + POWER_TOL_W)
        return None

    # bookkeeping ------------------------------------------------------------------------------
    def _dt(self, now: float) -> float:
        """The interval since the previous observation: what a finding seen now is integrated over."""
        return self._interval

    def _local_minute(self, ts: float) -> float:
        local = datetime.fromtimestamp(ts, self.s.zone)
        return local.hour * 60 + local.minute + local.second / 60.0

    def finish(self, ts: float) -> None:
        """The end of the soak: open episodes are judged up to now, unanswered probes recorded."""
        for ep in list(self._requirements.values()) + list(self._excursions.values()):
            if ep.last_excess > 0.0 and ts > ep.since + ep.allowed and ep.violation is None:
                self._open(ep, max(ep.since + ep.allowed, ep.last_ts), ep.last_excess, ep.check)
            self._close(ep, ts)
        if self._lapse is not None:
            self._close(self._lapse, ts)
        for probe in self._probes:
            self.reactions.append(Reaction(probe.fault.id, probe.fault.kind, probe.check,
                                           self._fault_ts[probe.fault.id], None, False, probe.allowed))
        self._probes.clear()


def _beyond(allowance_w: float) -> Callable[[PlantTruth], float]:
    """How far the PCS's |power| is beyond `allowance_w` (0 W for a safe state)."""
    return lambda x: abs(x.pcs_w) - allowance_w - POWER_TOL_W


def charge_blocked_w(t: PlantTruth) -> float:
    """Charging the PCS was told to do (its setpoint register) that its own power cap (limit %) holds
    back: under a DSO order the EMS writes the order's % to the PCS, which caps charging as well."""
    asked = max(0.0, -t.pcs_setpoint_w)
    return max(0.0, asked - t.pcs_cap_w) if t.pcs_enabled and not t.pcs_fallback else 0.0
