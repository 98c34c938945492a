"""The hardware watchdog is petted only while the safety loop is healthy; a clean stop disarms it."""
from __future__ import annotations

from pathlib import Path

import yaml

from appliance import demo_config
from ems.config import ConfigStore
from ems.runtime import Listen, Runtime
from ems.safety.watchdog import MAGIC_CLOSE, PET, HardwareWatchdog
from safety_common import Rig


def test_petting_stops_while_unhealthy_and_a_clean_stop_writes_the_magic_close(tmp_path: Path):
    device = tmp_path / "watchdog"  # stands in for /dev/watchdog: every byte written lands here
    device.write_bytes(b"")
    watchdog = HardwareWatchdog(str(device), min_interval_s=0.0)
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


def test_a_crashed_process_leaves_the_watchdog_armed(tmp_path: Path):
    """Without the clean stop the magic character is never written: the countdown runs out."""
    device = tmp_path / "watchdog"
    device.write_bytes(b"")
    watchdog = HardwareWatchdog(str(device), min_interval_s=0.0)
    watchdog.open()
    watchdog.pet()
    del watchdog  # no close(): as after SIGKILL
    assert MAGIC_CLOSE not in device.read_bytes()


def test_runtime_wires_the_watchdog_path_from_the_config(tmp_path: Path):

    device = tmp_path / "wd"
    device.write_bytes(b"")
    cfg = demo_config(power_control={"hardware_watchdog_path": str(device)})
    (tmp_path / "ems.yaml").write_text(yaml.safe_dump(cfg))
    rt = Runtime(ConfigStore.open(tmp_path / "ems.yaml"), tmp_path, Listen("127.0.0.1", 0))
    assert rt.hardware_watchdog is not None and rt.hardware_watchdog.path == str(device)
    rt.history.close()
