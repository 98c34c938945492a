"""`ems sim-device`: serve one device profile over Modbus TCP or RTU, optionally backed by a running plant.

    ems sim-device --profile KEY (--tcp HOST:PORT | --rtu /dev/ttyX) [--plant] [--unit-id N]

For bench tests of a real EMS gateway (point its config at this host) and for trying a profile before
the hardware arrives. Prints one line `serving <profile> on <where> unit <n>` to stderr once listening
(port 0 = any free port; the line shows the bound one), then runs until SIGINT/SIGTERM. Exit code 2 for
a profile or argument that cannot be used, 1 when the port cannot be opened.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..clock import ScaledClock
from ..config import load_config
from ..config.schema import EmsConfig
from ..errors import ConfigError, ProfileError, ProfileProblem
from ..resources import profiles_dir
from .plant import resolve_start_epoch_s
from ..devices.profile import BAUDRATES, Profile, load_profile
from .modbus_devices import DeviceServer, SerialLine
from .plant_link import PlantLink

log = logging.getLogger(__name__)

EXIT_USAGE = 2


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, help="profile key (e.g. hithium_ess_5016) or path of a profile .yaml")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="listen for Modbus TCP (port 0 = any free port)")
    where.add_argument("--rtu", metavar="/dev/ttyX", help="serve Modbus RTU on this serial port")
    p.add_argument("--plant", action="store_true",
                   help="step a plant simulator in real time: writes to a PCS profile move the battery")
    p.add_argument("--unit-id", type=int, help="Modbus unit id (default: the profile's)")
    p.add_argument("--baudrate", type=int, choices=BAUDRATES, help="RTU baud rate (default: the profile's)")
    p.add_argument("--parity", choices=("N", "E", "O"), help="RTU parity (default: the profile's)")
    p.add_argument("--stopbits", type=int, choices=(1, 2), help="RTU stop bits (default: the profile's)")
    p.add_argument("--emulate-line-time", action="store_true",
                   help="RTU: delay answers by their wire time at the baud rate (a pty has none)")
    p.add_argument("--config", help="ems.yaml whose bess and simulator sections size the plant")
    p.add_argument("--profiles-dir", help=f"where profile keys are looked up (default: {profiles_dir()})")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `sim-device` on the `ems` command's subparsers."""
    p = subparsers.add_parser("sim-device", help="serve a device profile over Modbus TCP or RTU (simulated device)",
                              description=__doc__.split("\n\n")[0])
    _add_arguments(p)
    p.set_defaults(func=cmd_sim_device)
    return p


def _resolve_profile(spec: str, directory: str | None) -> Profile:
    if spec.endswith((".yaml", ".yml")):
        return load_profile(Path(spec))
    folder = Path(directory) if directory else profiles_dir()
    path = folder / f"{spec}.yaml"
    if not path.is_file():
        keys = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise ProfileError([ProfileProblem(str(path), "--profile", f"no profile {spec!r} in {folder} (allowed: {keys})")])
    return load_profile(path)


def _parse_tcp(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--tcp {value!r}: expected HOST:PORT, e.g. 127.0.0.1:5020 (port 0..65535)")
    return host, int(port)


def cmd_sim_device(args: argparse.Namespace) -> int:
    try:
        profile = _resolve_profile(args.profile, args.profiles_dir)
    except ProfileError as err:
        for problem in err.problems:
            print(str(problem), file=sys.stderr)
        return EXIT_USAGE
    cfg = EmsConfig()
    if args.config:
        try:
            cfg = load_config(Path(args.config))
        except ConfigError as err:
            print(f"{args.config}: {len(err.problems)} error(s)", file=sys.stderr)
            for config_problem in err.problems:
                print(str(config_problem), file=sys.stderr)
            return EXIT_USAGE
    try:
        tcp = _parse_tcp(args.tcp) if args.tcp else None
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    c = profile.connection
    rtu = None if args.rtu is None else SerialLine(args.rtu, args.baudrate or c.baudrate, args.parity or c.parity,
                                                   args.stopbits or c.stopbits)
    unit_id = args.unit_id if args.unit_id is not None else c.unit_id
    return asyncio.run(_serve(profile, cfg, tcp, rtu, unit_id, args.plant, args.emulate_line_time))


async def _serve(profile: Profile, cfg: EmsConfig, tcp: tuple[str, int] | None, rtu: SerialLine | None,
                 unit_id: int, stepped: bool, emulate_line_time: bool) -> int:
    sim = cfg.simulator
    clock = ScaledClock(resolve_start_epoch_s(sim, time.time()), sim.speed)
    link = PlantLink.from_config(cfg.bess, sim, clock.now())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = DeviceServer(profile, link, tcp=tcp, rtu=rtu, unit_id=unit_id, clock=clock,
                          emulate_line_time=emulate_line_time)
    try:
        await server.start()
    except OSError as err:
        print(str(err), file=sys.stderr)
        return 1
    print(f"serving {profile.key} on {server.where} unit {unit_id}"
          f"{' (plant stepped)' if stepped else ''}", file=sys.stderr, flush=True)
    stepper = asyncio.create_task(link.run(clock, sim.step_s)) if stepped else None
    try:
        await stop.wait()
    finally:
        if stepper is not None:
            stepper.cancel()
        await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m ems.sim.cli ...`) until `ems sim-device` is wired in."""
    parser = argparse.ArgumentParser(prog="ems sim-device", description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return cmd_sim_device(args)


if __name__ == "__main__":
    sys.exit(main())
