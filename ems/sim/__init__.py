"""The built-in plant simulator: physics (battery, PV and load, DSO box), the runner that steps it on
the clock, scripted events, and the Modbus device servers (with their `ems sim-device` CLI).

Production code never imports this package; only the runtime's assembly does, and only when
`simulator.enabled` is set, so a gateway on real hardware does not load it.
"""
