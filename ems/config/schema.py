"""The `ems.yaml` schema: one frozen dataclass per section, defaults, units in names.

Sign conventions used everywhere in Phoenyra EMS:
battery power > 0 = discharging, grid power > 0 = import from the grid.

Two markers decide who may see and change a key over the API (`ems.config.guard` enforces them):
- `secret=True`: a credential; write-only (a GET shows `{"set": true|false}`, never the value);
- `admin_only=True`: safety- or security-relevant (it could loosen a grid or plant safety rule, send a
  secret somewhere else, or open the web UI up); only admins change it, and every change is audited.
  A marked list or section covers everything inside it, including adding and removing items.
Hard bounds on safety thresholds come from the physics of the plant, not from taste; each names its
reason in `doc`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Optional

from .. import i18n
from ..localtime import DEFAULT_TIMEZONE, zone_problem
from .paths import char_device, existing_char_device
from .validate import Message, not_allowed
from .validate import constrained as c

HHMM = r"([01]\d|2[0-3]):[0-5]\d|24:00"
HHMM_DOC = i18n.mark("HH:MM, 00:00 to 24:00")
# http(s) URLs without credentials in them (a secret belongs in its own write-only key).
URL = r"https?://[^\s/@]+(/\S*)?"
HOSTNAME = r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"

StrategyName = str  # a name in the strategy registry, `ems.optimizer.strategies.STRATEGIES` (StrategyConfig.check)
DeviceRole = Literal["bms", "pcs", "meter", "dso"]


@dataclass(frozen=True)
class SiteConfig:
    name: str = c("", pattern=r"[^\x00-\x1f\x7f]{0,80}", doc=i18n.mark("the site as people call it, shown in the "
                                                                       "page header; at most 80 characters, no "
                                                                       "control characters"))
    timezone: str = c(DEFAULT_TIMEZONE, doc="IANA time zone of the site: tariff windows, feed-in rules and "
                                            "forecasts are in its wall-clock time")

    def check(self) -> list[tuple[str, Message]]:
        problem = zone_problem(self.timezone)
        return [("timezone", problem)] if problem else []


@dataclass(frozen=True)
class BessConfig:
    capacity_kwh: float = c(50.0, min=0, exclusive_min=True, max=100_000, doc="usable nominal capacity")
    max_charge_power_kw: float = c(30.0, min=0, exclusive_min=True, max=100_000)
    max_discharge_power_kw: float = c(30.0, min=0, exclusive_min=True, max=100_000)
    charge_efficiency: float = c(0.95, min=0.5, max=1.0, doc="one-way, AC to stored energy")
    discharge_efficiency: float = c(0.95, min=0.5, max=1.0, doc="one-way, stored energy to AC")
    min_soc_pct: float = c(10.0, min=0, max=100)
    max_soc_pct: float = c(95.0, min=0, max=100)
    degradation_cost_eur_per_kwh: float = c(0.02, min=0, max=10, doc="per kWh discharged")

    def check(self) -> list[tuple[str, Message]]:
        if self.min_soc_pct >= self.max_soc_pct:
            return [("min_soc_pct", i18n.Msg(i18n.mark("must be below max_soc_pct ({max})"),
                                             {"max": self.max_soc_pct}))]
        return []


@dataclass(frozen=True)
class StrategyConfig:
    mode: Literal["auto", "manual"] = "auto"
    current: Optional[StrategyName] = None
    replan_interval_min: int = c(15, min=1, max=1440)
    horizon_h: int = c(24, min=1, max=72)

    def check(self) -> list[tuple[str, Message]]:
        if self.current is None and self.mode != "manual":
            return []
        # The registry is the one list of strategies; imported here because its modules import this schema.
        from ..optimizer.strategies import STRATEGIES
        allowed = list(STRATEGIES)
        if self.current is None:
            return [("current", i18n.Msg(i18n.mark("is required when mode is manual (allowed: {allowed})"),
                                         {"allowed": allowed}))]
        if self.current not in STRATEGIES:
            return [("current", not_allowed(self.current, allowed))]
        return []


@dataclass(frozen=True)
class ForecastConfig:
    price_source: Literal["awattar_at", "awattar_de", "entsoe", "bundled"] = "awattar_at"
    price_country: Literal["AT", "DE"] = c("AT", doc="bidding zone for entsoe and bundled prices "
                                                     "(the aWATTar sources imply theirs); DE = DE-LU")
    awattar_base_url: Optional[str] = c(None, pattern=URL,
                                        doc=i18n.mark("an http(s) URL without user:password@; null = "
                                                      "api.awattar.at or .de by price_source"))
    entsoe_base_url: str = c("https://web-api.tp.entsoe.eu/api", pattern=URL, admin_only=True,
                             doc=i18n.mark("an http(s) URL without user:password@; receives entsoe_token, so only "
                                           "admins change it"))
    publication_time: str = c("13:00", pattern=HHMM, doc=i18n.mark("local (CET/CEST) time after which next-day "
                                                                   "prices are expected; HH:MM, 00:00 to 24:00"))
    http_timeout_s: float = c(10.0, min=0.5, max=120, doc="per request, connect and read together")
    price_surcharge_eur_per_kwh: float = c(0.0, min=-1, max=10)
    price_surcharge_pct: float = c(0.0, min=0, max=100, doc="supplier margin on |market price|, e.g. 3")
    grid_fee_eur_per_kwh: float = c(0.0, min=0, max=10, doc="flat grid energy fee in the consumer price; "
                                                            "leave 0 when grid_tariffs prices the grid")
    vat_pct: float = c(20.0, min=0, max=100, doc="VAT on the consumer price (AT 20, DE 19)")
    horizon_h: int = c(48, min=1, max=168, doc="forecasts cover at least this and strategy.horizon_h")
    refit_interval_h: float = c(6.0, min=0.25, max=168, doc="how often load and PV models are refitted")
    fit_timeout_s: float = c(120.0, min=5, max=3600, doc="a model fit taking longer is abandoned (fallback used)")
    load_profile: Literal["household", "commercial"] = c("household", doc="standard profile used until a day "
                                                                          "of own load history exists")
    annual_load_kwh: float = c(4000.0, min=0, max=10_000_000, doc="scales that standard profile")
    latitude_deg: float = c(48.2, min=-90, max=90)
    longitude_deg: float = c(16.37, min=-180, max=180)
    pv_peak_kwp: float = c(0.0, min=0, max=100_000)
    pv_tilt_deg: float = c(30.0, min=0, max=90)
    pv_azimuth_deg: float = c(180.0, min=0, max=360, doc="180 = south")
    use_weather: bool = False
    openweathermap_api_key: Optional[str] = c(None, secret=True, doc="write-only")
    openweathermap_base_url: str = c("https://api.openweathermap.org/data/2.5", pattern=URL, admin_only=True,
                                     doc=i18n.mark("an http(s) URL without user:password@; receives "
                                                   "openweathermap_api_key, so only admins change it"))
    entsoe_token: Optional[str] = c(None, secret=True, doc="ENTSO-E security token; write-only")


@dataclass(frozen=True)
class MqttTopics:
    """Full topics replacing single parts of the layout under `topic_prefix`, for a cloud with names of its own.

    null = the layout (`<prefix>telemetry`, `<prefix>cmd/<name>`, `<prefix>status`; see README "MQTT"). The values
    earlier versions wrote into every saved file before any client existed (`phoenyra/bess/...`) mean null too:
    kept, they would put every gateway of a fleet on the same topics.
    """

    telemetry: Optional[str] = c(None, pattern=r"[^#+\s\x00$][^#+\s\x00]{0,199}",
                                 doc=i18n.mark("an MQTT topic without wildcards (+ #), not starting with $; "
                                               "null = <topic_prefix>telemetry"))
    commands: Optional[str] = c(None, pattern=r"[^#+\s\x00$][^#+\s\x00]{0,199}",
                                doc=i18n.mark("the level under which commands arrive as <commands>/<name>; an MQTT "
                                              "topic without wildcards (+ #), not starting with $; null = "
                                              "<topic_prefix>cmd"))
    status: Optional[str] = c(None, pattern=r"[^#+\s\x00$][^#+\s\x00]{0,199}",
                              doc=i18n.mark("retained online/offline (the last will); an MQTT topic without "
                                            "wildcards (+ #), not starting with $; null = <topic_prefix>status"))


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT uplink (`ems.mqtt`): telemetry to a broker, commands in, store-and-forward while it is away.

    Whatever arrives over MQTT only *requests* (a strategy, a bounded-time setpoint): the safety loop still decides.
    Keys that say where data and the password go, which topics carry commands, and which plant points MQTT may feed
    are admin only. The pre-release default client id `phoenyra-ems` means null (derived), like the topic defaults
    in `MqttTopics`: two gateways with one client id throw each other off the broker.
    """

    @staticmethod
    def tls_file_problem(value: object, _context: object = None) -> Optional[Message]:
        """`constrained(check=...)`: an absolute path to an existing, readable regular file (after symlinks).

        TLS files are read by the service (and a client certificate is shown to the broker), so a path must not
        name a directory, a device or a pipe; `ems.mqtt.client` checks again when it opens them.
        """
        import os
        import stat
        if not isinstance(value, str):
            return None
        if not os.path.isabs(value):
            return i18n.Msg(i18n.mark("{path} is not an absolute path (allowed: an existing file, e.g. "
                                      "/etc/phoenyra/ca.pem)"), {"path": repr(value[:80])})
        try:
            mode = os.stat(os.path.realpath(value)).st_mode
        except FileNotFoundError:
            return i18n.Msg(i18n.mark("{path} does not exist (allowed: an existing file)"), {"path": repr(value[:80])})
        except OSError as exc:
            return i18n.Msg(i18n.mark("{path} cannot be checked ({reason})"),
                            {"path": repr(value[:80]), "reason": exc.strerror or ""})
        if not stat.S_ISREG(mode):
            return i18n.Msg(i18n.mark("{path} is not a regular file (allowed: a PEM file)"), {"path": repr(value[:80])})
        if not os.access(value, os.R_OK):
            return i18n.Msg(i18n.mark("{path} is not readable by the EMS's user"), {"path": repr(value[:80])})
        return None

    @dataclass(frozen=True)
    class Source:
        """One plant-state point read from an MQTT topic (a meter or a wallbox publishing JSON or plain numbers)."""

        topic: str = c(pattern=r"[^#+\s\x00$][^#+\s\x00]{0,199}",
                       doc=i18n.mark("an MQTT topic without wildcards (+ #), not starting with $"))
        point: Literal["grid.power_w", "pv.power_w", "load.power_w", "bess.power_w", "battery.soc_pct",
                       "battery.soh_pct", "battery.voltage_v", "battery.current_a", "battery.temperature_c"] = \
            c(doc="the plant-state point it feeds (signs as everywhere: grid > 0 = import, battery > 0 = discharging)")
        json_key: Optional[str] = c(None, pattern=r"[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}",
                                    doc=i18n.mark("a dotted path into a JSON payload, list items by index "
                                                  "(ENERGY.Power, emeters.0.power); null = the payload is a plain "
                                                  "number"))
        scale: float = c(1.0, min=-1_000_000, max=1_000_000,
                         doc="the reading times this, e.g. 1000 for kW, -1 for a meter counting export as positive")
        max_age_s: float = c(30.0, min=1, max=3600, doc="a reading older than this is stale (the safety loop's "
                                                        "stale rules apply, as for any device)")

        def check(self) -> list[tuple[str, Message]]:
            return [("scale", i18n.Msg(i18n.mark("must not be 0 (every reading would be 0)")))] if self.scale == 0 \
                else []

    enabled: bool = c(False, doc="off: no connection, aiomqtt is not even imported")
    # The broker receives the password and may send commands: where it is, is for admins to decide.
    broker: str = c("localhost", pattern=HOSTNAME + r"|[0-9A-Fa-f:.]{2,45}", admin_only=True,
                    doc=i18n.mark("a host name or IP address"))
    port: int = c(1883, min=1, max=65535, admin_only=True, doc="1883 plain, 8883 usual with tls")
    site_id: Optional[str] = c(None, pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", admin_only=True,
                               doc=i18n.mark("letters, digits, _ . - (1-64): names this site in topics and Home "
                                             "Assistant; null = derived from the gateway's machine id (stable, "
                                             "unique per gateway)"))
    topic_prefix: Optional[str] = c(None, pattern=r"[^#+\s\x00$/][^#+\s\x00]{0,99}/", admin_only=True,
                                    doc=i18n.mark("topic levels ending in /, without wildcards (+ #), not starting "
                                                  "with $ or /; null = phoenyra/<site_id>/"))
    client_id: Optional[str] = c(None, pattern=r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}",
                                 doc=i18n.mark("letters, digits, _ . : - (1-64), unique per broker; null = "
                                               "phoenyra-<site_id>"))
    username: Optional[str] = c(None, admin_only=True)
    password: Optional[str] = c(None, secret=True, doc="write-only")
    tls: bool = c(False, admin_only=True, doc="TLS with the server's certificate and host name verified")
    tls_ca_file: Optional[str] = c(None, check=tls_file_problem, admin_only=True,
                                   doc="PEM CA bundle the broker's certificate must chain to; null = the system CAs")
    tls_cert_file: Optional[str] = c(None, check=tls_file_problem, admin_only=True,
                                     doc="PEM client certificate (with tls_key_file) for brokers that ask for one")
    tls_key_file: Optional[str] = c(None, check=tls_file_problem, admin_only=True,
                                    doc="PEM private key of tls_cert_file, unencrypted")
    keepalive_s: int = c(60, min=5, max=3600, doc="a broker silent for 1.5 times this counts as gone")
    reconnect_min_s: float = c(1.0, min=0.1, max=600, doc="first wait before reconnecting; doubles per failure")
    reconnect_max_s: float = c(60.0, min=1, max=3600, doc="longest wait between reconnects (each scaled by a "
                                                          "random 50-100 %, so a fleet does not reconnect in step)")
    qos: int = c(1, min=0, max=2, doc="of everything published; 1 = at least once (store-and-forward needs the "
                                      "broker's acknowledgement; 0 loses what is in flight when a link drops)")
    publish_interval_s: float = c(10.0, min=1, max=3600, doc="telemetry period")
    topics: MqttTopics = c(default_factory=MqttTopics, admin_only=True,
                           doc="single topics in place of the layout's (they decide where commands are taken from)")
    commands_enabled: bool = c(True, admin_only=True, doc="accept commands on <topic_prefix>cmd/<name> (the "
                                                          "broker's ACLs decide who may publish there)")
    command_secret: Optional[str] = c(None, secret=True, admin_only=True,
                                      doc="write-only; when set, a command must carry it as \"secret\"")
    command_max_age_s: float = c(60.0, min=1, max=86400, doc="a command whose \"ts\" is older than this is refused "
                                                             "(a setpoint delivered late is not what was asked)")
    commands_per_minute: int = c(30, min=1, max=600, doc="more are refused with an error reply (each strategy "
                                                         "change is a config write on the SD card)")
    sources: list[Source] = c(default_factory=tuple, max_items=32, unique="point", admin_only=True,
                              doc="topics mapped to plant-state points, merged on the bus with source mqtt")
    homeassistant_discovery: bool = c(False, doc="publish retained Home Assistant discovery payloads; turning it off "
                                                 "removes them")
    homeassistant_prefix: str = c("homeassistant", pattern=r"[A-Za-z0-9_-]{1,64}",
                                  doc=i18n.mark("Home Assistant's discovery prefix: letters, digits, _ - (1-64)"))
    outbox_max_mb: float = c(20.0, min=1, max=4096, doc="messages kept on disk while the broker is away (20 MB: "
                                                        "about 3 days at a 10 s telemetry period); beyond this the "
                                                        "oldest are dropped and counted")
    outbox_flush_interval_s: float = c(60.0, min=1, max=3600, doc="undelivered messages are written to disk in one "
                                                                  "batch per interval (SD wear); a power cut loses "
                                                                  "at most this much")

    def check(self) -> list[tuple[str, Message]]:
        problems: list[tuple[str, Message]] = []
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append(("tls_key_file" if self.tls_key_file is None else "tls_cert_file",
                             i18n.Msg(i18n.mark("tls_cert_file and tls_key_file go together (allowed: both or "
                                                "neither)"))))
        if not self.tls and (self.tls_ca_file or self.tls_cert_file):
            problems.append(("tls", i18n.Msg(i18n.mark("must be true when TLS files are set"))))
        if self.reconnect_min_s > self.reconnect_max_s:
            problems.append(("reconnect_min_s", i18n.Msg(i18n.mark("must not exceed reconnect_max_s ({max} s)"),
                                                         {"max": self.reconnect_max_s})))
        return problems


@dataclass(frozen=True)
class RegisterOverride:
    """A site's correction of one register of the device's profile: a vendor document read another way, a
    firmware that moved a register, a meter wired with a current transformer (scale). Unset keys keep the
    profile's value. The merged profile is checked as the profile file itself is (`ems.devices.overrides`)."""

    address: Optional[int] = c(None, min=0, max=65535)
    function: Optional[Literal[1, 2, 3, 4]] = c(None, doc="read function: 1 coils, 2 inputs, 3 holding, 4 input regs")
    type: Optional[str] = c(None, pattern=r"[a-z0-9]{2,16}", doc=i18n.mark("a register type of the profile format, e.g. "
                                                                                "int32"))
    word_order: Optional[Literal["big", "little"]] = None
    byte_order: Optional[Literal["big", "little"]] = None
    scale: Optional[float] = c(None, min=-1e9, max=1e9)
    offset: Optional[float] = c(None, min=-1e9, max=1e9)
    unit: Optional[str] = c(None, pattern=r"[^\x00-\x1f\x7f]{0,16}", doc=i18n.mark("at most 16 characters, no "
                                                                                "control characters"))


@dataclass(frozen=True)
class ModbusDeviceConfig:
    name: str = c(pattern=r"[a-z0-9_]{1,32}", doc=i18n.mark("lower-case letters, digits, _ (1-32)"))
    # Which device is the DSO box, the PCS or the BMS, and whether it is used, decides what the safety loop
    # sees and writes: admin only (and so is adding or removing a device).
    role: DeviceRole = c(admin_only=True)
    profile: str = c(pattern=r"[a-z0-9_]{1,64}", doc=i18n.mark("a profile key, e.g. hithium_ess_5016"),
                     admin_only=True)
    enabled: bool = c(True, admin_only=True)
    connection_type: Literal["tcp", "rtu"] = "tcp"
    host: Optional[str] = None
    port: int = c(502, min=1, max=65535)
    serial_port: Optional[str] = c(None, check=char_device, doc="a serial device under /dev, e.g. /dev/ttyUSB0")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit_id: int = c(1, min=0, max=247)
    poll_interval_s: float = c(2.0, min=0.1, max=3600)
    timeout_s: float = c(3.0, min=0.05, max=60)
    # How the EMS decodes what the device reports (a DSO input, the SoC, a limit): admin only.
    register_overrides: Mapping[str, RegisterOverride] = c(
        default_factory=dict, key_pattern=r"[a-z0-9_]{1,64}", key_doc=i18n.mark("a register name of the profile"),
        max_items=256, admin_only=True, doc="per-site corrections of the profile's registers")

    def check(self) -> list[tuple[str, Message]]:
        if self.connection_type == "tcp" and not self.host:
            return [("host", i18n.Msg(i18n.mark("is required for connection_type tcp")))]
        if self.connection_type == "rtu" and not self.serial_port:
            return [("serial_port", i18n.Msg(i18n.mark("is required for connection_type rtu (e.g. /dev/ttyUSB0)")))]
        return []


@dataclass(frozen=True)
class PowerControlConfig:
    """The safety loop's settings: every key is safety-relevant (admin only, audited)."""

    enabled: bool = c(True, admin_only=True, doc="off = no setpoints, and no DSO trip either")
    auto_write: bool = c(False, admin_only=True, doc="write setpoints to the PCS")
    stale_timeout_s: float = c(10.0, min=0.5, max=60, admin_only=True,
                               doc="telemetry older than this forces the safe state; at most 60 s, the longest a "
                                   "DSO trip or a BMS alarm may go unseen")
    setpoint_resend_s: float = c(5.0, min=0.5, max=60, admin_only=True,
                                 doc="re-send setpoints at least this often (vendor watchdogs)")
    safety_period_s: float = c(0.5, min=0.05, max=10, admin_only=True, doc="safety loop period")
    dso_comm_loss_limit_pct: float = c(0.0, min=0, max=100, admin_only=True,
                                       doc="limit applied when the DSO box is unreachable")
    min_grid_charge_kw_under_dso_limit: float = c(4.2, min=0, max=1000, admin_only=True,
                                                  doc="§14a EnWG: at least this stays available")
    min_insulation_resistance_kohm: float = c(100.0, min=50, max=100_000, admin_only=True,
                                              doc="a lower reading forces the safe state; at least 50 kΩ "
                                                  "(100 Ω/V at a 500 V pack, IEC 61557-8 practice): it cannot be off")
    max_battery_temperature_c: float = c(55.0, min=0, max=60, admin_only=True,
                                         doc="a higher battery temperature forces the safe state; at most 60 °C, "
                                             "the upper operating limit of Li-ion cells")
    safety_alarm_severity: Literal["critical", "shutdown"] = c("critical", admin_only=True,
                                                               doc="BMS alarms of this severity or higher force "
                                                                   "the safe state")
    hardware_watchdog_path: Optional[str] = c(None, check=existing_char_device, admin_only=True,
                                              doc="an existing character device, e.g. /dev/watchdog; null = not used")


@dataclass(frozen=True)
class FeedinRule:
    start: str = c("00:00", pattern=HHMM, doc=HHMM_DOC)
    end: str = c("24:00", pattern=HHMM, doc=HHMM_DOC)
    limit_pct: float = c(70.0, min=0, max=100)


@dataclass(frozen=True)
class FeedinLimitationConfig:
    """Feed-in limits are grid-connection obligations: loosening one is admin only."""

    enabled: bool = c(False, admin_only=True)
    mode: Literal["off", "fixed", "dynamic"] = c("off", admin_only=True)
    fixed_limit_pct: float = c(70.0, min=0, max=100, admin_only=True,
                               doc="of forecast.pv_peak_kwp with pv_integration_enabled, else of the grid "
                                   "connection's feed-in rating; also outside every dynamic rule")
    pv_integration_enabled: bool = False
    dynamic_rules: list[FeedinRule] = c(default_factory=tuple, max_items=48, admin_only=True)


@dataclass(frozen=True)
class GridConnectionConfig:
    max_power_kw: float = c(30.0, min=0, exclusive_min=True, max=100_000, admin_only=True,
                            doc="import limit at the connection point")
    max_feedin_kw: Optional[float] = c(None, min=0, max=100_000, admin_only=True,
                                       doc="export limit; null = max_power_kw")
    monitoring_enabled: bool = True
    warn_utilisation_pct: float = c(80.0, min=1, max=100)


@dataclass(frozen=True)
class HighLoadWindow:
    start: str = c("17:00", pattern=HHMM, doc=HHMM_DOC)
    end: str = c("19:00", pattern=HHMM, doc=HHMM_DOC)
    multiplier: float = c(1.25, min=0, max=10)
    months: list[int] = c(default_factory=tuple, min=1, max=12, max_items=12, doc="empty = all months")


@dataclass(frozen=True)
class GridTariffsConfig:
    enabled: bool = False
    network_level: Literal["NE3", "NE4", "NE5", "NE6", "NE7"] = "NE7"
    base_tariff_eur_per_kwh: float = c(0.1095, min=0, max=10, doc="grid energy price")
    power_price_eur_per_kw_month: float = c(0.0, min=0, max=1000)
    high_load_windows: list[HighLoadWindow] = c(default_factory=tuple, max_items=48,
                                                doc="at most 48 windows (one per half hour)")


@dataclass(frozen=True)
class WebConfig:
    """The web UI and API; every key is security-relevant (admin only, audited). host, port and threads
    take effect at the next start."""

    host: str = c("127.0.0.1", admin_only=True)
    port: int = c(8080, min=1, max=65535, admin_only=True)
    threads: int = c(12, min=4, max=64, admin_only=True,
                     doc="HTTP worker threads for requests; live-event streams get threads of their own")
    sse_interval_s: float = c(2.0, min=0.5, max=60, admin_only=True)
    sse_per_user: int = c(3, min=1, max=16, admin_only=True,
                          doc="live-event streams (browser tabs) one user may hold; more end the oldest")
    allow_registration: bool = c(False, admin_only=True,
                                 doc="self-registration creates viewer accounts; off by default (admins create "
                                     "accounts), rate-limited per address and overall when on")
    allowed_hosts: list[str] = c(default_factory=tuple, pattern=HOSTNAME, max_items=32, admin_only=True,
                                 doc=i18n.mark("host names the UI is reached by besides localhost, the gateway's "
                                               "own addresses, its host name and <hostname>.local (others get 421: "
                                               "DNS rebinding)"))
    request_timeout_s: float = c(10.0, min=2, max=120, admin_only=True,
                                 doc="a request (head and body) must arrive within this, or the connection is closed")
    max_connections_per_address: int = c(32, min=4, max=1024, admin_only=True,
                                         doc="open connections one client address may hold")


@dataclass(frozen=True)
class HistoryConfig:
    """Tiers of the history store: raw samples, 1-minute and 15-minute aggregates (kept forever)."""

    sample_interval_s: float = c(10.0, min=0.1, max=3600, doc="one telemetry row per interval")
    flush_interval_s: float = c(60.0, min=0.1, max=3600, doc="rows are written in one batch per interval")
    raw_retention_h: float = c(48.0, min=1, max=24 * 90, doc="raw samples are kept this long")
    minute_retention_days: int = c(365, min=1, max=3650, doc="1-minute mean/min/max are kept this long")
    retention_days: int = c(400, min=1, max=3650, doc="optimization runs are kept this long; "
                                                      "15-minute aggregates are kept forever")
    plan_retention_days: int = c(90, min=1, max=3650, doc="the full plan of each optimization run "
                                                         "(for plan vs actual) is kept this long")
    max_db_mb: int = c(4096, min=64, max=1_000_000, doc="the oldest 1-minute (then 15-minute) data is dropped "
                                                        "beyond this size; shown in /api/state")

    def check(self) -> list[tuple[str, Message]]:
        if self.minute_retention_days * 24 < self.raw_retention_h:
            return [("minute_retention_days", i18n.Msg(i18n.mark("must cover raw_retention_h ({hours} h)"),
                                                       {"hours": self.raw_retention_h}))]
        return []


@dataclass(frozen=True)
class DsoScriptStep:
    at_s: float = c(min=0, doc="seconds of simulated time after start")
    mode: Literal["normal", "limit", "trip"] = c()
    limit_pct: float = c(100.0, min=0, max=100)


@dataclass(frozen=True)
class SimulatorConfig:
    enabled: bool = True
    speed: float = c(1.0, min=0, exclusive_min=True, max=3600, doc="simulated seconds per real second")
    step_s: float = c(1.0, min=0.05, max=60, doc="simulation step in real seconds")
    start: Optional[str] = c(None, pattern=r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?([+-]\d\d:\d\d|Z)",
                             doc=i18n.mark("ISO time with offset, e.g. 2024-06-01T08:00:00+02:00; null = now"))
    load_profile: Literal["household", "commercial"] = "household"
    annual_load_kwh: float = c(4000.0, min=0, max=10_000_000)
    pv_peak_kwp: float = c(8.0, min=0, max=100_000)
    initial_soc_pct: float = c(50.0, min=0, max=100)
    soh_pct: float = c(98.0, min=1, max=100)
    ambient_temperature_c: float = c(25.0, min=-40, max=60)
    pack_nominal_voltage_v: float = c(400.0, min=12, max=1500)
    seed: int = c(1, min=0, max=2**31 - 1)
    serve_modbus: bool = c(False, doc="serve the configured modbus devices from the simulated plant "
                                      "(on their configured addresses) and poll them for real")
    dso_script: list[DsoScriptStep] = c(default_factory=tuple, max_items=10_000)


@dataclass(frozen=True)
class EmsConfig:
    site: SiteConfig = c(default_factory=SiteConfig)
    bess: BessConfig = c(default_factory=BessConfig)
    strategy: StrategyConfig = c(default_factory=StrategyConfig)
    forecast: ForecastConfig = c(default_factory=ForecastConfig)
    mqtt: MqttConfig = c(default_factory=MqttConfig)
    modbus: list[ModbusDeviceConfig] = c(default_factory=tuple, max_items=32)
    power_control: PowerControlConfig = c(default_factory=PowerControlConfig)
    feedin_limitation: FeedinLimitationConfig = c(default_factory=FeedinLimitationConfig)
    grid_connection: GridConnectionConfig = c(default_factory=GridConnectionConfig)
    grid_tariffs: GridTariffsConfig = c(default_factory=GridTariffsConfig)
    web: WebConfig = c(default_factory=WebConfig)
    history: HistoryConfig = c(default_factory=HistoryConfig)
    simulator: SimulatorConfig = c(default_factory=SimulatorConfig)

    def check(self) -> list[tuple[str, Message]]:
        problems: list[tuple[str, Message]] = []
        names = [d.name for d in self.modbus]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append((f"modbus[{i}].name", i18n.Msg(i18n.mark("'{key}' is used twice (each {field} "
                                                                         "must be unique)"),
                                                               {"key": name, "field": "name"})))
        if not self.simulator.enabled and not any(d.enabled for d in self.modbus):
            problems.append(("modbus", i18n.Msg(i18n.mark("no enabled device and the simulator is off: nothing to "
                                                          "control (allowed: enable simulator or add a device)"))))
        return problems


SECTIONS = tuple(f for f in EmsConfig.__dataclass_fields__)
