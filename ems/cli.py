"""The `ems` command: run the appliance, check a config file, soak it in faults, print the version."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .config import ConfigStore, load_config
from .errors import ConfigError
from .backtest.cli import add_parser as add_backtest_parser
from .sim.cli import add_parser as add_sim_device_parser
from .soak.cli import add_parser as add_soak_parser
from .resources import demo_config_text

log = logging.getLogger(__name__)

EXIT_CONFIG_ERROR = 2


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "phoenyra-ems"


def _print_config_errors(err: ConfigError, path: Path) -> None:
    print(f"{path}: {len(err.problems)} error(s)", file=sys.stderr)
    for problem in err.problems:
        print(str(problem), file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = Path(args.path)
    try:
        from .runtime import load_profiles
        load_profiles(load_config(path))
    except ConfigError as err:
        _print_config_errors(err, path)
        return EXIT_CONFIG_ERROR
    print("ok")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runtime import Listen, Runtime  # the heavy imports only when running

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    if args.config:
        path = Path(args.config)
    else:
        path = data_dir / "ems.yaml"
        if not path.exists():
            path.write_text(demo_config_text(), encoding="utf-8")
            log.info("no --config given: created the demo configuration (plant simulator) at %s", path)
    try:
        store = ConfigStore.open(path)
    except ConfigError as err:
        _print_config_errors(err, path)
        return EXIT_CONFIG_ERROR
    web = store.config.web
    listen = Listen(args.host or web.host, args.port if args.port is not None else web.port)
    try:
        runtime = Runtime(store, data_dir, listen)
    except ConfigError as err:
        _print_config_errors(err, path)
        return EXIT_CONFIG_ERROR
    password = runtime.security.users.ensure_admin() if runtime.security.users.is_empty() else None
    if password:
        print(f"First start: created the administrator account.\n  Login: admin\n  Password: {password}\n"
              f"(shown once; `ems user reset-password admin --data-dir {data_dir}` sets a new one)", flush=True)
    return asyncio.run(runtime.run())


def cmd_user_reset_password(args: argparse.Namespace) -> int:
    from .errors import ApiError
    from .users.auth import Security

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    security = Security.open(data_dir)
    try:
        if args.username == "admin" and security.users.get_by_username("admin") is None:
            password = security.users.ensure_admin() or security.reset_password("admin")
        else:
            password = security.reset_password(args.username)
    except ApiError as exc:
        print(f"{args.username}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        security.close()
    print(f"  Login: {args.username}\n  Password: {password}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ems", description="Phoenyra EMS — battery energy management appliance")
    parser.add_argument("--version", action="version", version=f"phoenyra-ems {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("EMS_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the appliance (no --config: the demo on the plant simulator)")
    run.add_argument("--config", help="path of ems.yaml (default: <data-dir>/ems.yaml, created from the demo)")
    run.add_argument("--host", help="listen address (overrides web.host)")
    run.add_argument("--port", type=int, help="listen port (overrides web.port; 0 = any free port)")
    run.add_argument("--data-dir", help=f"history and state (default: {default_data_dir()})")
    run.set_defaults(func=cmd_run)
    user = sub.add_parser("user", help="user accounts (for a locked-out installer)")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    reset = user_sub.add_parser("reset-password", help="set a new random password and print it "
                                                       "(creates 'admin' if there is none); ends the user's sessions")
    reset.add_argument("username")
    reset.add_argument("--data-dir", help=f"where users.json lives (default: {default_data_dir()})")
    reset.set_defaults(func=cmd_user_reset_password)
    add_backtest_parser(sub)
    add_sim_device_parser(sub)
    add_soak_parser(sub)
    check = sub.add_parser("check-config", help="validate a config file: prints ok, or every error and exits 2")
    check.add_argument("path")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pymodbus logs every failed frame at ERROR; our pollers report the same per device, once, with context.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
