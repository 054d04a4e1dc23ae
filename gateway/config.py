"""Configuration: one TOML file, `MESGW_…` environment overrides, secrets from env/files/systemd.

Precedence, highest first: environment (`MESGW_MQTT__PASSWORD`), systemd credentials
(`$CREDENTIALS_DIRECTORY/mqtt__password`), the TOML file, defaults. Unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# What every config file shares, and the connectors' own models, composed here (the names
# stay importable from gateway.config).
from common.config import ENV_NESTED as ENV_NESTED
from common.config import ENV_PREFIX as ENV_PREFIX
from common.config import Ident as Ident
from common.config import Section as Section
from common.config import format_errors as _format_errors
from common.config import read_secret_file as _read_secret_file
from common.config import read_toml as _read_toml
from connectors.modbus.address import tag_specs as modbus_tag_specs
from connectors.modbus.config import ModbusConnector as ModbusConnector
from connectors.modbus.config import ModbusSerial as ModbusSerial
from connectors.opcua.config import OPCUA_PKI_DIR as OPCUA_PKI_DIR
from connectors.opcua.config import OpcUaConnector as OpcUaConnector
from connectors.opcua.config import OpcUaSecurityPolicy as OpcUaSecurityPolicy
from connectors.opcua.nodeid import parse_node_id
from connectors.tags import ByteOrder as ByteOrder
from connectors.tags import DataType as DataType
from connectors.tags import TagConfig as TagConfig
from connectors.tags import TagRole as TagRole
from gateway.errors import ConfigError
from gateway.web.config import WebSection
from rules.config import (
    ReasonConfig,
    ReasonRule,
    RulesSection,
    ShiftCalendar,
    StateTableConfig,
    check_references,
)

DEFAULT_CONFIG = Path("/etc/mesgw/gateway.toml")


class GatewaySection(Section):
    id: Ident = "gw-01"
    site: Ident = "site"
    shutdown_timeout_s: float = Field(20.0, gt=0, description="hard limit for an ordered stop")
    flush_timeout_s: float = Field(10.0, gt=0, description="time to hand the outbox to the broker")
    status_interval_s: float = Field(30.0, gt=0, description="how often outbox depth is logged")


class TlsSection(Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class MqttSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    version: Literal["5", "3.1.1"] = "5"
    prefix: str = "mes/v1"
    client_id: str | None = Field(None, description="default: mesgw-<gateway id>")
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: TlsSection | None = None
    keepalive_s: int = Field(30, ge=5, le=65535)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    max_inflight: int = Field(1000, ge=1, le=65535)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or v.startswith("/") or v.endswith("/") or any(c in v for c in "#+"):
            raise ValueError("must be a topic path without wildcards or leading/trailing '/'")
        return v

    @model_validator(mode="after")
    def _secret_file(self) -> MqttSection:
        if self.password is None and self.password_file is not None:
            object.__setattr__(self, "password", _read_secret_file(self.password_file))
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        return self


class OutboxSection(Section):
    path: Path = Path("/var/lib/mesgw/outbox.db")
    max_events: int = Field(1_000_000, ge=1000, description="bound; appends wait when reached")
    full_wait_s: float = Field(
        0.0, ge=0, description="how long an append waits for space; 0 = wait until there is"
    )
    commit_interval_ms: float = Field(5.0, ge=0, le=1000)
    max_batch: int = Field(5000, ge=1)
    synchronous: Literal["full", "normal"] = Field(
        "full", description="full: every commit survives power loss; normal: survives kill -9"
    )


class StoreSection(Section):
    dsn: SecretStr = SecretStr("postgresql://mesgw@127.0.0.1:5432/mes")
    password: SecretStr | None = None
    password_file: Path | None = None
    timescaledb: Literal["auto", "on", "off"] = "auto"
    pool_size: int = Field(2, ge=1, le=64)
    connect_timeout_s: float = Field(10.0, gt=0)
    events_retention_days: int = Field(400, ge=0, description="0 keeps raw events forever")
    compress_after_days: int = Field(7, ge=1)

    @model_validator(mode="after")
    def _secret_file(self) -> StoreSection:
        if self.password is None and self.password_file is not None:
            object.__setattr__(self, "password", _read_secret_file(self.password_file))
        return self


class RecorderSection(Section):
    client_id: str = "mesgw-recorder"
    share_group: str | None = Field(
        None, description="MQTT 5 shared subscription group; recorders in one group split the load"
    )
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    receive_maximum: int = Field(10_000, ge=1, le=65535)
    batch_max: int = Field(5000, ge=1)
    batch_wait_ms: float = Field(50.0, ge=0)
    retry_max_s: float = Field(30.0, gt=0)
    in_process: bool = Field(False, description="run the recorder inside `mesgw run`")


class LoggingSection(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


# Default metrics ports per command, so a gateway and a recorder on one box never collide.
METRICS_PORTS = {"run": 9464, "record": 9465, "review": 9466}


class MetricsSection(Section):
    """Prometheus `/metrics`, `/healthz` and `/readyz` over HTTP (gateway.metrics)."""

    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1, description="loopback unless set")
    port: int | None = Field(
        None, ge=0, le=65535, description="default 9464 (run), 9465 (record), 9466 (review)"
    )

    def port_for(self, command: str) -> int:
        """The port this command listens on (0 = any free port)."""
        return self.port if self.port is not None else METRICS_PORTS[command]


class OpcUaSection(Section):
    """Plant-wide OPC UA settings (each machine's connection is in its `connector`)."""

    machines_per_session: int = Field(
        0,
        ge=0,
        le=10_000,
        description="machines sharing one session per endpoint; 0 = all of them in one",
    )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiSection(Section):
    """The HTTP API for work orders (`mesgw order` uses it): loopback only unless a token is set."""

    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8080, ge=0, le=65535, description="0 = any free port")
    token: SecretStr | None = Field(None, description="bearer token; required off loopback")
    token_file: Path | None = None

    @model_validator(mode="after")
    def _token(self) -> ApiSection:
        if self.token is None and self.token_file is not None:
            object.__setattr__(self, "token", _read_secret_file(self.token_file))
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("token must be at least 16 characters")
        if self.enabled and self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host} is reachable from the network: set token or token_file "
                "(without one anyone there could start and stop orders)"
            )
        return self


class OrdersSection(Section):
    schedule_csv: Path | None = Field(None, description="a schedule CSV imported at start")
    command_max_age_s: float = Field(
        60.0, ge=0, description="refuse commands whose ts/sent_at is older; 0 = no limit"
    )


class ReviewExportSection(Section):
    """`[review.export]`: the shape of the ERP confirmation file."""

    delimiter: Literal[",", ";", "\t", "|"] = Field(";", description="CSV field separator")
    decimal_comma: bool = Field(False, description="1234,5 instead of 1234.5 in CSV")
    unit: str = Field("PCE", min_length=1, max_length=8, description="unit of measure of parts")
    work_centres: dict[Ident, str] = Field(
        default_factory=dict, description="machine id → ERP work centre (default: the line)"
    )
    operations: dict[Ident, str] = Field(
        default_factory=dict, description="machine id → ERP operation number (default: id)"
    )


class ReviewSection(Section):
    """`mesgw review`: the clerk's service beside the database (API under /api/v1/)."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8090, ge=0, le=65535, description="0 = any free port")
    quantity_tolerance_pct: float = Field(
        2.0, ge=0, description="orders whose good + scrap is further off their quantity are queued"
    )
    micro_stop_s: float = Field(120.0, gt=0, description="longer open stops without reason queue")
    no_order_min_s: float = Field(60.0, ge=0, description="less time with no order is not queued")
    queue_days: float = Field(7.0, gt=0, description="default queue window: the last N days")
    token_cache_s: float = Field(
        60.0, ge=0, description="a verified API token is trusted this long"
    )
    export: ReviewExportSection = ReviewExportSection()


class SamplesSection(Section):
    """The raw-sample log (`gateway.samples`), the input of `mesgw replay`."""

    record: bool = Field(False, description="log every changed tag value as JSON lines")
    directory: Path = Path("/var/lib/mesgw/samples")
    keep_days: int = Field(14, ge=0, description="day files older than this are deleted; 0 = keep")


class SyntheticConnector(Section):
    """A built-in event source for demos and tests: a machine making parts at a set rate."""

    type: Literal["synthetic"]
    cycle_time_s: float = Field(1.0, gt=0)
    reject_ratio: float = Field(0.02, ge=0, le=1)
    count_interval_s: float = Field(10.0, gt=0)
    stop_probability: float = Field(0.0, ge=0, le=1, description="chance per interval of a stop")
    events: int = Field(0, ge=0, description="stop after this many events; 0 = run forever")
    seed: int | None = None


Connector = Annotated[
    OpcUaConnector | ModbusConnector | SyntheticConnector, Field(discriminator="type")
]


class MachineConfig(Section):
    id: Ident
    area: Ident
    line: Ident
    connector: Connector
    tags: dict[Ident, TagConfig] = Field(default_factory=dict)
    ideal_cycle_time_s: float | None = Field(None, gt=0)
    # Production rules (rules/config.py; names are checked against the plant sections).
    state_table: str | None = Field(
        None, description="packml-packtags, packml-opc30060, machinery, or a [state_tables] name"
    )
    mode_tag: Ident | None = Field(None, description="operation mode tag (machinery preset)")
    down_after_s: float | None = Field(
        None, gt=0, description="no count this long = down; default down_after_cycles x ICT"
    )
    max_rate_per_s: float | None = Field(
        None, gt=0, description="parts/s the machine can make at most; default from the ICT"
    )
    micro_stop_s: float | None = Field(None, ge=0, description="default rules.micro_stop_s")
    shift_calendar: Ident | None = Field(None, description="default: the calendar 'default'")
    reason_map: dict[str, str] = Field(
        default_factory=dict, description="PLC reason code → catalog code"
    )
    reason_rules: list[ReasonRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _opcua_node_ids(self) -> MachineConfig:
        if self.connector.type != "opcua":
            return self
        problems = []
        for name, tag in self.tags.items():
            try:
                parse_node_id(tag.address)
            except ValueError as err:
                problems.append(
                    InitErrorDetails(
                        type=PydanticCustomError("node_id", "{reason}", {"reason": str(err)}),
                        loc=("tags", name, "address"),
                        input=tag.address,
                    )
                )
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    @model_validator(mode="after")
    def _modbus_tags(self) -> MachineConfig:
        connector = self.connector
        if not isinstance(connector, ModbusConnector):
            return self
        _, problems = modbus_tag_specs(
            self.tags,
            address_base=connector.address_base,
            byte_order=connector.byte_order,
            max_registers=connector.max_registers,
            max_bits=connector.max_bits,
        )
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("modbus_tag", "{reason}", {"reason": message}),
                        loc=("tags", name, key),
                        input=getattr(self.tags[name], key, None),
                    )
                    for name, key, message in problems
                ],
            )
        return self


_config_file: ContextVar[Path | None] = ContextVar("mesgw_config_file", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _CredentialsSource(PydanticBaseSettingsSource):
    """systemd `LoadCredential=` files: `$CREDENTIALS_DIRECTORY/mqtt__password` → mqtt.password."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory or not Path(directory).is_dir():
            return {}
        out: dict[str, Any] = {}
        for entry in sorted(Path(directory).iterdir()):
            parts = entry.name.split(ENV_NESTED)
            if parts[0] not in self.settings_cls.model_fields or not entry.is_file():
                continue
            node = out
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = entry.read_text(encoding="utf-8").strip()
        return out


def _deep_merge(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _MergedSource(PydanticBaseSettingsSource):
    """Deep-merges sources so `MESGW_MQTT__PORT` overrides one key, not the whole section."""

    def __init__(
        self, settings_cls: type[BaseSettings], sources: list[PydanticBaseSettingsSource]
    ) -> None:
        super().__init__(settings_cls)
        self._sources = sources  # lowest precedence first

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for source in self._sources:
            merged = _deep_merge(merged, source())
        return merged


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED,
        case_sensitive=False,
    )

    gateway: GatewaySection = GatewaySection()
    mqtt: MqttSection = MqttSection()
    outbox: OutboxSection = OutboxSection()
    store: StoreSection = StoreSection()
    recorder: RecorderSection = RecorderSection()
    logging: LoggingSection = LoggingSection()
    api: ApiSection = ApiSection()
    orders: OrdersSection = OrdersSection()
    samples: SamplesSection = SamplesSection()
    review: ReviewSection = ReviewSection()
    web: WebSection = WebSection()
    metrics: MetricsSection = MetricsSection()
    opcua: OpcUaSection = OpcUaSection()
    rules: RulesSection = RulesSection()
    shifts: dict[Ident, ShiftCalendar] = Field(default_factory=dict)
    reasons: list[ReasonConfig] = Field(default_factory=list)
    state_tables: dict[Ident, StateTableConfig] = Field(default_factory=dict)
    machines: list[MachineConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_machines(self) -> Settings:
        seen: set[str] = set()
        # Samples, rules state and order commands name a machine by its id alone.
        for machine in self.machines:
            if machine.id in seen:
                raise ValueError(f"duplicate machine id {machine.id!r}: ids are unique per gateway")
            seen.add(machine.id)
        return self

    @model_validator(mode="after")
    def _serial_lines_agree(self) -> Settings:
        # Machines on one RS-485 line share the port: one baud rate, framing and timeout.
        lines: dict[str, tuple[str, ModbusConnector]] = {}
        for machine in self.machines:
            spec = machine.connector
            if not isinstance(spec, ModbusConnector) or spec.serial is None:
                continue
            if spec.transport != "rtu":
                continue
            first = lines.setdefault(spec.serial.port, (machine.id, spec))
            other, theirs = first
            if (theirs.serial, theirs.timeout_s) != (spec.serial, spec.timeout_s):
                index = self.machines.index(machine)
                message = (
                    f"shares serial port {spec.serial.port} with machine {other!r} but not "
                    "its serial settings and timeout_s"
                )
                raise ValidationError.from_exception_data(
                    "Settings",
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "serial_line", "{reason}", {"reason": message}
                            ),
                            loc=("machines", index, "connector", "serial"),
                            input=spec.serial.port,
                        )
                    ],
                )
        return self

    @model_validator(mode="after")
    def _rules_references(self) -> Settings:
        # State tables, calendars, reasons and tags named by the rule keys must exist.
        check_references(self)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get()
        toml = _TomlSource(settings_cls, _read_toml(path) if path else {})
        env = EnvSettingsSource(
            settings_cls,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter=ENV_NESTED,
            case_sensitive=False,
        )
        merged = _MergedSource(settings_cls, [toml, _CredentialsSource(settings_cls), env])
        return (init_settings, merged)


def format_errors(exc: ValidationError, path: Path | None) -> list[str]:
    """common.config's `file: key: message` lines; for an unknown key of the gateway's own
    configuration, with the key it probably meant ("did you mean")."""
    problems = _format_errors(exc, path)
    if exc.title != "Settings":
        return problems
    from gateway.config_help import did_you_mean

    out = []
    for err, line in zip(exc.errors(), problems, strict=True):
        hint = did_you_mean(tuple(err["loc"])) if err["type"] == "extra_forbidden" else None
        out.append(f"{line}; {hint}" if hint else line)
    return out


def load_config(path: Path | None) -> Settings:
    """Load and validate; raises ConfigError naming the file and key of every problem."""
    token = _config_file.set(path)
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, path)) from exc
    finally:
        _config_file.reset(token)


def machine_topic(settings: Settings, machine: MachineConfig) -> str:
    """`{prefix}/{site}/{area}/{line}/{machine}` — the root of one machine's topics."""
    return "/".join(
        (settings.mqtt.prefix, settings.gateway.site, machine.area, machine.line, machine.id)
    )


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data with every secret replaced by '***'."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    data["store"]["dsn"] = redact_dsn(settings.store.dsn.get_secret_value())
    return data


def redact_dsn(dsn: str) -> str:
    """The DSN with its password masked, in the userinfo and in the query string."""
    try:
        password = urllib.parse.urlsplit(dsn).password
    except ValueError:
        return "***"
    if password is not None:
        dsn = dsn.replace(f":{password}@", ":***@", 1)
    return _QUERY_PASSWORD.sub(r"\1***", dsn)


_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&]*", re.IGNORECASE)
