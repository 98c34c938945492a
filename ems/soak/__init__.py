"""The grid-safety soak: a simulated month of faults through the real runtime, judged by an oracle.

`ems soak --days N --seed S` runs the production runtime (pollers, bus, safety loop and its PCS writes,
planner, forecasts, history) against the plant simulator's Modbus devices in virtual time, through a
seeded fault schedule (`faults`), while `oracle` checks from the plant's own truth (`world`) that no grid
or battery limit was broken beyond its documented reaction time; `report` writes the JSON line and the
HTML page, `runner` ties them together.
"""
