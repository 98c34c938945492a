"""Generate the bundled noisy load years (`ems/data/household_crest_2024_4000kWh_15min.csv`,
`ems/data/business_stochastic_2024_50000kWh_15min.csv`): offline, once; the CSVs are bundled with
their provenance in `ems/data/SOURCES.md`. Nothing in `ems` imports this script or its generators.

Why: the BDEW standard profiles repeat exactly every week, so "same time last week" forecasts them
almost perfectly and no forecaster can be judged on them (DOMAIN.md). Real sites are noisy.

- **Household** — `richardsonpy` 0.2.3 (PyPI; RWTH-EBC's Python port of the Richardson/CREST
  occupancy-and-appliance model, GPL-3.0): a Markov chain of active occupants (3 persons, 10-min
  states), appliances switched on by occupancy-dependent activity probabilities (1-min), lighting
  from occupancy and irradiance (the package's German test-reference-year radiation). Single-family
  house, 3 occupants, no electric space or water heating, 366 days from Monday 1 January 2024, seed
  2024. Its raw year is ~6,900 kWh; 80 W of always-on standby (which its appliance set lacks) plus the
  model's power scaled by ~0.48 make 4,000 kWh/a, so it sits beside the BDEW H25 file. The model knows
  weekdays and weekends, not public holidays.
  Only the generated numbers are bundled; the GPL program is not part of the product.
- **Small business** — no maintained open generator for small commercial sites exists on PyPI, so
  this file has its own documented stochastic model (`business_load_w`, numpy, seed 2024): an
  office and shop of about 12 staff, open Monday–Friday with random opening/closing times, half of
  the Saturdays in the morning, closed on Sundays, Austrian public holidays and company holidays;
  per day a random staff count, each person arriving and leaving at random times with a PC and
  a lunch dip; lighting when open and dark (daylight from the bundled 2024 PV shape, so dull days
  need more light); ventilation while open; air conditioning above 22 °C outdoor (Open-Meteo
  Munich 2024 temperatures from the shared data set); three refrigeration compressors cycling with
  a temperature-dependent duty cycle day and night; an IT base load with a slow random walk;
  random kitchen/machine runs (3–6 kW, 20–90 min). Scaled to 50,000 kWh/a beside the BDEW G25 file.

Run (a throw-away venv: the generator is not a dependency of the product):

    python3 -m venv /tmp/gen && /tmp/gen/bin/pip install richardsonpy==0.2.3 numpy
    /tmp/gen/bin/python tools/gen_load_data.py [--only household|business] [--out ems/data]

Times: both models run on local (Europe/Vienna) wall-clock minutes. The CSV has one row per real
15-minute interval of local 2024 with its UTC offset: the skipped spring hour has no rows, the
repeated autumn hour reads the same wall-clock slots twice (as `ems.forecast.series` does).
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ZONE = ZoneInfo("Europe/Vienna")
YEAR = 2024
DAYS = 366
MIN_PER_DAY = 1440
SLOT_MIN = 15
SEED = 2024
HOUSEHOLD_STANDBY_W = 80.0
"""Always-on standby (router, standby devices, circulation pump) the CREST appliance set leaves out: its
night floor is 46 W raw, ~22 W once scaled to 4,000 kWh, far below the 100–200 W seen in real homes."""
HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "ems" / "data"
SHARED = HERE.parent.parent / "shared" / "data"

AT_HOLIDAYS_2024 = {date(2024, 1, 1), date(2024, 1, 6), date(2024, 4, 1), date(2024, 5, 1), date(2024, 5, 9),
                    date(2024, 5, 20), date(2024, 5, 30), date(2024, 8, 15), date(2024, 10, 26), date(2024, 11, 1),
                    date(2024, 12, 8), date(2024, 12, 25), date(2024, 12, 26)}
"""Austrian public holidays 2024 (Neujahr, Hl. Drei Könige, Ostermontag, Staatsfeiertag, Christi Himmelfahrt,
Pfingstmontag, Fronleichnam, Mariä Himmelfahrt, Nationalfeiertag, Allerheiligen, Mariä Empfängnis, Christtag,
Stefanitag)."""


# -- shared helpers --------------------------------------------------------------------------------

def read_hourly(path: Path, year: int = YEAR) -> np.ndarray:
    """An hourly `timestamp,value` CSV → one value per local wall-clock hour of `year` (366 × 24),
    the autumn's repeated hour averaged, the spring's missing hour interpolated."""
    sums = np.zeros(DAYS * 24)
    counts = np.zeros(DAYS * 24)
    start = date(year, 1, 1)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        for ts, value in reader:
            local = datetime.fromisoformat(ts).astimezone(ZONE)
            if local.year != year:
                continue
            k = (local.date() - start).days * 24 + local.hour
            sums[k] += float(value)
            counts[k] += 1
    out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    idx = np.arange(len(out))
    ok = np.isfinite(out)
    return np.interp(idx, idx[ok], out[ok])


def wall_minutes_to_csv(minute_w: np.ndarray, annual_kwh: float, path: Path, column: str = "load_kw",
                        fixed_w: float = 0.0) -> float:
    """1-minute wall-clock W → 15-min kW rows for every real interval of local 2024: `fixed_w` plus the
    series scaled so that the rows add up to `annual_kwh`. Returns the scale factor applied."""
    slots_kw = minute_w.reshape(-1, SLOT_MIN).mean(axis=1) / 1000.0
    start = datetime(YEAR, 1, 1, tzinfo=ZONE)
    end = datetime(YEAR + 1, 1, 1, tzinfo=ZONE)
    rows = []
    ts = start.timestamp()
    while ts < end.timestamp():
        local = datetime.fromtimestamp(ts, ZONE)
        wall = (local.date() - start.date()).days * 96 + (local.hour * 60 + local.minute) // SLOT_MIN
        rows.append((local, float(slots_kw[wall])))
        ts += SLOT_MIN * 60
    hours = len(rows) * SLOT_MIN / 60.0
    energy = sum(v for _, v in rows) * SLOT_MIN / 60.0
    scale = (annual_kwh - fixed_w / 1000.0 * hours) / energy
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(f"timestamp,{column}\n")
        for local, v in rows:
            fh.write(f"{local.isoformat()},{fixed_w / 1000.0 + v * scale:.6f}\n")
    return scale


# -- the household: richardsonpy (CREST) -----------------------------------------------------------

def household_minutes_w(occupants: int = 3, seed: int = SEED) -> np.ndarray:
    """One year of 1-minute household power (W) from richardsonpy; `random` seeded for repeatability."""
    import richardsonpy.classes.electric_load as eload
    import richardsonpy.classes.occupancy as occ
    import richardsonpy.functions.change_resolution as cr
    import richardsonpy.functions.load_radiation as loadrad

    random.seed(seed)
    np.random.seed(seed)
    occupancy = occ.Occupancy(number_occupants=occupants, initial_day=1, nb_days=DAYS)
    q_direct, q_diffuse = loadrad.get_rad_from_try_path()
    # The test reference year has 365 days; 2024 has 366: repeat its last day.
    q_direct = np.concatenate([q_direct, q_direct[-24:]])
    q_diffuse = np.concatenate([q_diffuse, q_diffuse[-24:]])
    q_direct = cr.change_resolution(q_direct, old_res=3600, new_res=60)
    q_diffuse = cr.change_resolution(q_diffuse, old_res=3600, new_res=60)
    load = eload.ElectricLoad(occ_profile=occupancy.occupancy, total_nb_occ=occupants, q_direct=q_direct,
                              q_diffuse=q_diffuse, annual_demand=4000.0, is_sfh=True, timestep=60, initial_day=1,
                              prev_heat_dev=True)
    out = np.asarray(load.loadcurve, dtype=float)
    assert len(out) == DAYS * MIN_PER_DAY, len(out)
    return out


# -- the small business: an own stochastic occupancy and appliance model ---------------------------

def business_load_w(temperature_c: np.ndarray, daylight_kw_per_kwp: np.ndarray, seed: int = SEED,
                    staff: int = 12) -> np.ndarray:
    """One year of 1-minute power (W) of a small office and shop (see the module doc for the parts).

    `temperature_c` and `daylight_kw_per_kwp` are hourly on the wall-clock year (366 × 24)."""
    rng = np.random.default_rng(seed)
    n = DAYS * MIN_PER_DAY
    minute = np.arange(n)
    temp = np.interp(minute / 60.0, np.arange(len(temperature_c)), temperature_c)
    daylight = np.interp(minute / 60.0, np.arange(len(daylight_kw_per_kwp)), daylight_kw_per_kwp)
    power = np.zeros(n)

    # Company holidays: the week around Christmas/New Year and two weeks in August.
    company_off = {date(YEAR, 1, 2), date(YEAR, 1, 3), date(YEAR, 1, 4), date(YEAR, 1, 5)}
    company_off |= {date(YEAR, 8, 5) + timedelta(days=k) for k in range(14)}
    company_off |= {date(YEAR, 12, 23) + timedelta(days=k) for k in range(9)}

    # IT and standby base load: a slow random walk around 1.6 kW (servers, routers, standby, emergency light).
    base = 1600.0 + np.cumsum(rng.normal(0.0, 2.0, n))
    base -= np.convolve(base - 1600.0, np.ones(7 * MIN_PER_DAY) / (7 * MIN_PER_DAY), mode="same")  # no drift
    power += np.clip(base, 1100.0, 2200.0)

    # Refrigeration: three compressors (1.1 kW each) whose duty cycle rises with the outdoor temperature.
    for _ in range(3):
        on = False
        left = int(rng.integers(1, 20))
        rated = rng.normal(1100.0, 80.0)
        for k in range(n):
            left -= 1
            if left <= 0:
                duty = float(np.clip(0.30 + 0.012 * (temp[k] - 10.0), 0.15, 0.75))
                on = not on
                mean_on = 12.0
                mean = mean_on if on else mean_on * (1.0 - duty) / duty
                left = max(2, int(rng.exponential(mean)))
            if on:
                power[k] += rated

    for day_no in range(DAYS):
        day = date(YEAR, 1, 1) + timedelta(days=day_no)
        weekday = day.weekday()
        first = day_no * MIN_PER_DAY
        if day in AT_HOLIDAYS_2024 or day in company_off or weekday == 6:
            continue
        if weekday == 5:
            if rng.random() > 0.5:
                continue
            open_min = int(rng.normal(8 * 60, 10))
            close_min = int(rng.normal(12 * 60 + 30, 20))
            people = int(rng.binomial(4, 0.8))
        else:
            open_min = int(rng.normal(7 * 60, 12))
            close_min = int(rng.normal(18 * 60, 25) + (90 if rng.random() < 0.1 else 0))  # some late evenings
            people = int(rng.binomial(staff, 0.82))
        sl = slice(first + open_min, first + close_min)
        # Ventilation and shop equipment while open.
        power[sl] += rng.normal(2600.0, 150.0)
        # Lighting: full when dark, less with daylight (the PV shape as a daylight proxy), some always on.
        light = 2500.0 * np.clip(1.0 - daylight[sl] / 0.45, 0.25, 1.0)
        power[sl] += light * rng.normal(1.0, 0.05)
        # Air conditioning above 22 °C outdoor, 0.9 kW per K up to 9 kW, only while open.
        power[sl] += np.clip(900.0 * (temp[sl] - 22.0), 0.0, 9000.0) * (rng.random() < 0.95)
        # People: each arrives and leaves at random, a PC and a desk (110–180 W), lunch away for 30–60 min.
        for _ in range(people):
            arrive = first + open_min + int(abs(rng.normal(20, 25)))
            leave = first + close_min - int(abs(rng.normal(25, 40)))
            if leave <= arrive:
                continue
            watts = rng.uniform(110.0, 180.0)
            power[arrive:leave] += watts
            if weekday < 5:
                lunch = first + int(rng.normal(12 * 60 + 10, 25))
                power[lunch:lunch + int(rng.uniform(30, 60))] -= 0.7 * watts
        # Kitchen / machine runs: a few per open day, 3–6 kW for 20–90 minutes.
        for _ in range(int(rng.poisson(2.5 if weekday < 5 else 1.0))):
            start = first + int(rng.uniform(open_min, max(open_min + 1, close_min - 20)))
            power[start:start + int(rng.uniform(20, 90))] += rng.uniform(3000.0, 6000.0)
        # Coffee machine and kettle bursts: short spikes.
        for _ in range(int(rng.poisson(people * 1.5))):
            start = first + int(rng.uniform(open_min, close_min))
            power[start:start + int(rng.integers(2, 5))] += 1800.0
    return np.maximum(power, 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=("household", "business"))
    p.add_argument("--out", default=str(DATA))
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.only in (None, "household"):
        w = household_minutes_w()
        path = out / "household_crest_2024_4000kWh_15min.csv"
        scale = wall_minutes_to_csv(w, 4000.0, path, fixed_w=HOUSEHOLD_STANDBY_W)
        print(f"{path}: raw {w.sum() / 60000:.0f} kWh, scaled × {scale:.3f}", file=sys.stderr)
    if args.only in (None, "business"):
        temp = read_hourly(SHARED / "weather" / "munich_temperature_2023_2024.csv")
        daylight = read_hourly(DATA / "pv_per_kwp_2023_2024_hourly.csv")
        w = business_load_w(temp, daylight)
        path = out / "business_stochastic_2024_50000kWh_15min.csv"
        scale = wall_minutes_to_csv(w, 50000.0, path)
        print(f"{path}: raw {w.sum() / 60000:.0f} kWh, scaled × {scale:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
