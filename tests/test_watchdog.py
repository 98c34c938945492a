"""The hardware watchdog is petted only while the safety loop is healthy; a clean stop disarms it; and it is
only ever a character device under /dev — never a file the pets would overwrite."""
from __future__ import annotations

import os
import select
import tty
from pathlib import Path

import pytest
import yaml

from appliance import demo_config
from ems.config import ConfigStore
from ems.config.schema import EmsConfig
from ems.config.validate import parse_config
from ems.errors import ConfigError
from ems.runtime import Listen, Runtime
from ems.safety.watchdog import MAGIC_CLOSE, PET, HardwareWatchdog
from safety_common import Rig


class PtyDevice:
    """A real character device under /dev standing in for /dev/watchdog: the slave end of a pseudo-terminal
    (raw mode); every byte written to it is read back from the master end."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.seen = b""

    def read_bytes(self) -> bytes:
        while select.select([self.master], [], [], 0.2)[0]:  # bounded: returns once nothing more is waiting
            self.seen += os.read(self.master, 4096)
        return self.seen

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty_device():
    device = PtyDevice()
    yield device
    device.close()


def test_petting_stops_while_unhealthy_and_a_clean_stop_writes_the_magic_close(tmp_path: Path, pty_device):
    device = pty_device  # stands in for /dev/watchdog: every byte written lands here
    watchdog = HardwareWatchdog(device.path, min_interval_s=0.0)
    watchdog.open()
    rig = Rig(tmp_path, request_w=2000)
    rig.loop.pet_watchdogs = watchdog.pet

    rig.cycles(3)
    assert device.read_bytes() == PET * 3  # healthy: petted every cycle

    rig.sink.fail = True  # the PCS stops acknowledging writes
    rig.dispatcher.request_w = 2500  # a new setpoint must go out
    rig.cycles(3)
    assert device.read_bytes() == PET * 3  # unhealthy: not petted, so the board would reset

    rig.sink.fail = False
    rig.clock.advance(20)  # and the readings went stale meanwhile
    rig.cycles(2)
    assert device.read_bytes() == PET * 3

    rig.publish()
    rig.cycles(1)
    assert device.read_bytes() == PET * 4  # healthy again

    watchdog.close()
    assert device.read_bytes() == PET * 4 + MAGIC_CLOSE


def test_a_crashed_process_leaves_the_watchdog_armed(pty_device):
    """Without the clean stop the magic character is never written: the countdown runs out."""
    device = pty_device
    watchdog = HardwareWatchdog(device.path, min_interval_s=0.0)
    watchdog.open()
    watchdog.pet()
    assert device.read_bytes() == PET
    os.close(watchdog._fd)  # the kernel closes it as after SIGKILL: no magic close
    assert MAGIC_CLOSE not in device.read_bytes()


def test_runtime_wires_the_watchdog_path_from_the_config(tmp_path: Path, pty_device):
    cfg = demo_config(power_control={"hardware_watchdog_path": pty_device.path})
    (tmp_path / "ems.yaml").write_text(yaml.safe_dump(cfg))
    rt = Runtime(ConfigStore.open(tmp_path / "ems.yaml"), tmp_path, Listen("127.0.0.1", 0))
    assert rt.hardware_watchdog is not None and rt.hardware_watchdog.path == pty_device.path
    rt.history.close()


@pytest.mark.parametrize("name", ["users.json", "regular-file"])
def test_the_watchdog_path_cannot_name_a_regular_file(tmp_path: Path, name: str):
    """Pointed at the user store, the pets every second would overwrite it: such a config is refused, and so
    is opening the file, which stays as it was."""
    target = tmp_path / name
    target.write_text('{"users": {}}')
    for path in (str(target), f"/dev/../{target}", "/dev/../etc/passwd"):
        with pytest.raises(ConfigError) as err:
            parse_config(EmsConfig, {"power_control": {"hardware_watchdog_path": path}})
        assert err.value.problems[0].path == "power_control.hardware_watchdog_path", path
    with pytest.raises(ValueError, match="not a device path"):
        HardwareWatchdog(str(target)).open()
    assert target.read_text() == '{"users": {}}'


def test_the_watchdog_path_must_be_an_existing_character_device():
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config(EmsConfig, {"power_control": {"hardware_watchdog_path": "/dev/watchdog-phoenyra-nope"}})
    with pytest.raises(ConfigError, match="not a character device"):
        parse_config(EmsConfig, {"power_control": {"hardware_watchdog_path": "/dev/pts"}})
    assert parse_config(EmsConfig, {"power_control": {"hardware_watchdog_path": "/dev/null"}}) \
        .power_control.hardware_watchdog_path == "/dev/null"


def test_a_serial_port_must_be_a_device_too():
    device = {"name": "meter", "role": "meter", "profile": "eastron_sdm630", "connection_type": "rtu"}
    with pytest.raises(ConfigError) as err:
        parse_config(EmsConfig, {"modbus": [{**device, "serial_port": "/var/lib/phoenyra/users.json"}]})
    assert err.value.problems[0].path == "modbus[0].serial_port"
    unplugged = parse_config(EmsConfig, {"modbus": [{**device, "serial_port": "/dev/ttyUSB7-unplugged"}]})
    assert unplugged.modbus[0].serial_port == "/dev/ttyUSB7-unplugged"  # an adapter may be plugged in later
