"""Modbus devices as data: profiles (YAML, validated), the pure register codec and SunSpec discovery.

No I/O lives here: pollers and the device simulator build on these functions.
"""
from .codec import (CodecError, ReadBlock, active_alarms, decode, decode_values, encode, from_point, plan_reads,
                    split_block, to_point, words_per_type)
from .profile import (AlarmDef, ConnectionDefaults, Controls, DsoInput, DsoMapping, DsoStep, HeartbeatControl,
                      Profile, ProfileMeta, RegisterDef, RtcRegisters, SetpointControl, StatusCodes, SunSpecSettings,
                      SwitchControl, dso_state, load_library, load_profile, parse_profile, profile_to_json)

__all__ = [
    "AlarmDef", "CodecError", "ConnectionDefaults", "Controls", "DsoInput", "DsoMapping", "DsoStep",
    "HeartbeatControl", "Profile", "ProfileMeta", "ReadBlock", "RegisterDef", "RtcRegisters", "SetpointControl",
    "StatusCodes", "SunSpecSettings", "SwitchControl", "active_alarms", "decode", "decode_values", "dso_state",
    "encode", "from_point", "load_library", "load_profile", "parse_profile", "plan_reads", "profile_to_json",
    "split_block", "to_point", "words_per_type",
]
