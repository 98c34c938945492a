"""The history's channels: what a telemetry row holds, and how each tier summarises it.

Two kinds. A **measured** channel (SoC, powers, prices, the DSO state …) is summarised per bucket as
sum and count of the values present (so the mean ignores gaps rather than counting them as zeros),
minimum and maximum. An **energy** channel is an amount accumulated over the sample's duration (Wh of
each power flow, € of cost, seconds covered): a bucket keeps only its sum, which is exactly the amount
over the bucket whatever the tier, so kWh and money over any range are sums, not averages of averages.
The energy channels are derived from the measured ones when a row is written (`ems.history.flows`).

Adding a channel: append it here with the schema version that introduces it, and add that version
to `ems.history.schema.MIGRATIONS` (`add_channels` adds the columns to every tier). Old rows read NULL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["measured", "energy"]


@dataclass(frozen=True)
class Channel:
    name: str
    kind: Kind
    unit: str
    since: int  # schema version that added it


def _measured(since: int, *names_units: tuple[str, str]) -> tuple[Channel, ...]:
    return tuple(Channel(n, "measured", u, since) for n, u in names_units)


def _energy(since: int, *names_units: tuple[str, str]) -> tuple[Channel, ...]:
    return tuple(Channel(n, "energy", u, since) for n, u in names_units)


CHANNELS: tuple[Channel, ...] = (
    *_measured(1, ("soc_pct", "%"), ("soh_pct", "%"), ("voltage_v", "V"), ("current_a", "A"),
               ("temperature_c", "°C"), ("bess_power_w", "W"), ("pv_power_w", "W"), ("load_power_w", "W"),
               ("grid_power_w", "W"), ("setpoint_w", "W"), ("max_charge_power_w", "W"),
               ("max_discharge_power_w", "W"), ("dso_limit_pct", "%")),
    *_measured(2, ("pv_curtailed_w", "W"), ("export_limit_w", "W"), ("dso_state", "0 normal, 1 limit, 2 trip"),
               ("import_price_eur_per_kwh", "€/kWh"), ("export_price_eur_per_kwh", "€/kWh")),
    *_energy(2, ("dt_s", "s"), ("pv_wh", "Wh"), ("load_wh", "Wh"), ("import_wh", "Wh"), ("export_wh", "Wh"),
             ("charge_wh", "Wh"), ("discharge_wh", "Wh"), ("pv_to_load_wh", "Wh"), ("pv_to_battery_wh", "Wh"),
             ("pv_to_grid_wh", "Wh"), ("grid_to_load_wh", "Wh"), ("grid_to_battery_wh", "Wh"),
             ("battery_to_load_wh", "Wh"), ("battery_to_grid_wh", "Wh"), ("pv_curtailed_wh", "Wh"),
             ("cost_eur", "€"), ("cost_no_battery_eur", "€"), ("priced_s", "s")),
)

MEASURED: tuple[str, ...] = tuple(c.name for c in CHANNELS if c.kind == "measured")
ENERGY: tuple[str, ...] = tuple(c.name for c in CHANNELS if c.kind == "energy")
ALL: tuple[str, ...] = MEASURED + ENERGY
BY_NAME: dict[str, Channel] = {c.name: c for c in CHANNELS}

DSO_STATES = {"normal": 0.0, "limit": 1.0, "trip": 2.0}
"""`dso.mode` as a number, so a bucket's max says whether a trip happened in it."""

FLOW_KEYS: tuple[str, ...] = ("pv_to_load", "pv_to_battery", "pv_to_grid", "grid_to_load", "grid_to_battery",
                              "battery_to_load", "battery_to_grid", "pv_curtailed")
"""The Sankey's flows, each the energy channel `<key>_wh`."""
