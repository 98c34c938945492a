"""The safety loop's setpoint sink for a real (or simulated) PCS: writes through the PCS's poller.

The safety loop decides; this module only translates one battery setpoint (W, > 0 = discharge) into the
PCS profile's `controls`:
1. `remote_enable` (take control), written on the first setpoint, again after every reconnect (the PCS
   may have restarted in local mode) and whenever the polled value says it is off;
2. `active_power_limit_pct`, when the caller passes a limit and it changed (or after a reconnect);
3. the power: `active_power_set_w` (with a direction register where the device wants one), or for a
   device steered by its grid setpoint (Victron ESS) `grid_power_set_w = load - PV - setpoint`, which
   needs fresh load and PV values;
4. the `heartbeat` (counter or toggle), and the heartbeats of `extra_heartbeats` devices (a BMS that
   raises "EMS communication lost" without one) - only while the safety loop keeps calling, which is
   the point of a heartbeat.
Every write is read back (`DevicePoller.write`). Any failure raises a `DeviceError`; the safety loop
treats that as a failed write. The loop must call at least every `max_resend_s`.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import DeviceError
from ..state import PlantState
from .poller import DevicePoller

if TYPE_CHECKING:
    from ..safety.rules import PowerControlDecision

log = logging.getLogger(__name__)


class ModbusSetpointSink:
    def __init__(self, pcs: DevicePoller, state: Callable[[], PlantState] | None = None,
                 now: Callable[[], float] | None = None, extra_heartbeats: Sequence[DevicePoller] = ()):
        controls = pcs.profile.controls
        if controls is None or (controls.active_power_set_w is None and controls.grid_power_set_w is None):
            raise DeviceError(pcs.name, f"profile {pcs.profile.key} has no power setpoint control "
                                        "(controls.active_power_set_w or controls.grid_power_set_w): "
                                        "it cannot be the PCS")
        if controls.active_power_set_w is None and (state is None or now is None):
            raise DeviceError(pcs.name, f"profile {pcs.profile.key} is steered by its grid setpoint: the sink "
                                        "needs the plant state and the clock to convert a battery setpoint")
        self.pcs = pcs
        self._state = state
        self._now = now
        self.extra_heartbeats = tuple(extra_heartbeats)
        self.last_w: float | None = None
        self.last_limit_pct: float | None = None
        self.writes = 0
        self.last_error: str | None = None
        self._enabled_on: int | None = None  # connection id of the PCS link the enable was written on
        self._enabled_cycle = 0
        self._limit_on: int | None = None
        self._heartbeats: dict[str, int] = {}

    @property
    def max_resend_s(self) -> float | None:
        """The longest the safety loop may leave between calls: the heartbeat period, a third of the PCS's
        own comm-loss timeout; None when the profile states neither."""
        c = self.pcs.profile.controls
        bounds = [d.profile.controls.heartbeat.period_s for d in (self.pcs, *self.extra_heartbeats)
                  if d.profile.controls is not None and d.profile.controls.heartbeat is not None]
        if c is not None and c.comm_loss_timeout_s:
            bounds.append(c.comm_loss_timeout_s / 3.0)
        return min(bounds) if bounds else None

    async def write_setpoint(self, power_w: float, limit_pct: float | None = None, enable: bool = True) -> None:
        """Write `power_w` (> 0 discharge) and, when given, the active power limit in % of rated power.
        `enable=False` leaves remote enable alone (a disabled PCS is not re-enabled just to be told 0 W)."""
        try:
            await self._write(float(power_w), limit_pct, enable)
        except DeviceError as exc:
            self.last_error = str(exc)
            raise
        self.last_error = None
        self.last_w = float(power_w)
        self.writes += 1

    async def _write(self, power_w: float, limit_pct: float | None, enable: bool = True) -> None:
        pcs = self.pcs
        c = pcs.profile.controls
        assert c is not None, "checked in __init__: the PCS profile has controls"
        connection = pcs.connection_id
        if enable and c.remote_enable is not None:
            # a poll counts only if it started after the enable was written (one in flight may predate it)
            polled = pcs.values.get(c.remote_enable.register) if pcs.cycles >= self._enabled_cycle + 2 else None
            if self._enabled_on != connection or (polled is not None and int(polled) != c.remote_enable.on_value):
                await pcs.write("remote_enable", True)
                self._enabled_on, self._enabled_cycle = connection, pcs.cycles
                log.info("%s: remote control enabled", pcs.name)
        if limit_pct is not None and c.active_power_limit_pct is not None:
            if limit_pct != self.last_limit_pct or self._limit_on != connection:
                await pcs.write("active_power_limit_pct", float(limit_pct))
                self.last_limit_pct, self._limit_on = float(limit_pct), connection
        if c.active_power_set_w is not None:
            await pcs.write("active_power_set_w", power_w)
        else:
            await pcs.write("grid_power_set_w", self._grid_setpoint_w(power_w))
        await self._heartbeat(pcs, required=True)
        for device in self.extra_heartbeats:
            try:
                await self._heartbeat(device, required=False)
            except DeviceError as exc:  # the setpoint went out; a missed BMS heartbeat is reported, not fatal
                log.warning("%s: heartbeat not written: %s", device.name, exc)

    def _grid_setpoint_w(self, power_w: float) -> float:
        assert self._state is not None and self._now is not None, "checked in __init__ for grid-steered PCSs"
        state, now = self._state(), self._now()
        load_w, pv_w = state.value("load.power_w", now), state.value("pv.power_w", now)
        missing = [p for p, v in (("load.power_w", load_w), ("pv.power_w", pv_w)) if v is None]
        if missing:
            raise DeviceError(self.pcs.name, f"cannot turn {power_w:.0f} W into a grid setpoint: no fresh "
                                             f"{', '.join(missing)}", "grid_power_set_w")
        return load_w - pv_w - power_w

    async def _heartbeat(self, device: DevicePoller, required: bool) -> None:
        c = device.profile.controls
        if c is None or c.heartbeat is None:
            return
        reg = device.profile.registers[c.heartbeat.register]
        top = int(reg.max) if reg.max is not None else 65535
        previous = self._heartbeats.get(device.name, 0)
        value = (1 - previous) if c.heartbeat.mode == "toggle" else (previous + 1) % (top + 1)
        await device.write("heartbeat", value, verify=required)
        self._heartbeats[device.name] = value

    async def release(self) -> None:
        """Hand control back to the PCS (remote enable off): on a DSO shutdown order."""
        c = self.pcs.profile.controls
        assert c is not None, "checked in __init__: the PCS profile has controls"
        if c.remote_enable is not None:
            await self.pcs.write("remote_enable", False)
            self._enabled_on = None
            log.info("%s: remote control released", self.pcs.name)


class PcsSink:
    """The safety loop's view of a Modbus PCS: a decision in, the PCS's registers written.

    A DSO shutdown order writes 0 W and then takes remote enable away (the PCS is disabled, not just idle);
    the next normal decision enables it again.
    """

    def __init__(self, modbus: ModbusSetpointSink):
        self.modbus = modbus

    @property
    def online(self) -> bool:
        """False while the PCS link is down: nothing can be written, the PCS's own comm-loss fallback rules."""
        return self.modbus.pcs.online

    @property
    def max_resend_s(self) -> float | None:
        return self.modbus.max_resend_s

    async def apply(self, decision: "PowerControlDecision") -> None:
        if decision.remote_shutdown_requested:
            await self.modbus.write_setpoint(0.0, enable=False)
            await self.modbus.release()
            return
        await self.modbus.write_setpoint(decision.setpoint_w, limit_pct=decision.limit_pct)

    async def safe_state(self) -> None:
        """0 W without taking remote control: a PCS the EMS does not drive stays as it is."""
        await self.modbus.write_setpoint(0.0, enable=False)
