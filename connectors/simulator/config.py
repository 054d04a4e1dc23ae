"""The simulated line's configuration (TOML): its servers, machines, counters and random stops.

Errors read like the gateway's: `file: key.path: message`, one line per problem.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from common.config import Ident, Section, format_errors, read_toml
from common.errors import ConfigError
from connectors.simulator import layout
from connectors.simulator.layout import CounterName as CounterName
from connectors.simulator.states import Numbering, state_code
from connectors.tags import ByteOrder

StateRef = Annotated[int, Field(ge=0, le=32767)] | str
ReasonCode = Annotated[int, Field(ge=0, le=32767)]


class OpcUaSection(Section):
    """The shared OPC UA server of the machines that do not set their own `port`."""

    host: str = "127.0.0.1"
    port: int = Field(4840, ge=0, le=65535, description="0: a free port at start")
    namespace: str = Field("urn:mesgw:sim", min_length=1)


class ModbusSection(Section):
    """The shared Modbus TCP server of the machines that do not set their own `port`."""

    host: str = "127.0.0.1"
    port: int = Field(5020, ge=0, le=65535, description="0: a free port at start")
    byte_order: ByteOrder = "ABCD"


class CounterSpec(Section):
    """A cumulative PLC counter: it wraps to 0 at 2^width or at `modulus`."""

    width: Literal[16, 32, 64] | None = None
    modulus: int | None = Field(None, ge=2, le=1 << 64)
    initial: int = Field(0, ge=0, description="value at start, e.g. just below the wrap")

    @model_validator(mode="after")
    def _wrap(self) -> CounterSpec:
        if self.width is not None and self.modulus is not None:
            raise ValueError("give width or modulus, not both")
        if self.width is None and self.modulus is None:
            object.__setattr__(self, "width", 32)
        if self.initial >= self.wrap_at:
            raise ValueError(f"initial must be below the wrap value {self.wrap_at}")
        return self

    @property
    def wrap_at(self) -> int:
        """The value at which the counter reads 0 again."""
        return self.modulus if self.modulus is not None else 1 << (self.width or 32)

    @property
    def data_type(self) -> Literal["uint16", "uint32", "uint64"]:
        """The narrowest unsigned register type that holds every value of the counter."""
        if self.wrap_at <= 1 << 16:
            return "uint16"
        return "uint32" if self.wrap_at <= 1 << 32 else "uint64"


class RandomStop(Section):
    """Free-running stops: each cycle starts one with `probability`, for min_s..max_s."""

    kind: Literal["fault", "stop"] = "fault"
    state: StateRef | None = Field(None, description="default: aborted (fault), stopped (stop)")
    reasons: list[ReasonCode] = Field(min_length=1)
    probability: float = Field(ge=0, le=1)
    min_s: float = Field(gt=0)
    max_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _range(self) -> RandomStop:
        if self.min_s > self.max_s:
            raise ValueError("min_s must not exceed max_s")
        return self

    def state_ref(self) -> StateRef:
        if self.state is not None:
            return self.state
        return "aborted" if self.kind == "fault" else "stopped"


def check_order(order: str, length: int) -> None:
    """An order number must fit the fixed-length string tag the PLC holds it in."""
    try:
        size = len(order.encode("latin-1"))
    except UnicodeEncodeError as err:
        raise ValueError("an order number must be Latin-1 text") from err
    if size > length:
        raise ValueError(f"order {order!r} is longer than order_length ({length} bytes)")


def _good_and_reject() -> dict[CounterName, CounterSpec]:
    return {"good": CounterSpec(), "reject": CounterSpec()}


class MachineSpec(Section):
    """One simulated machine and the PLC tags it serves."""

    id: Ident
    area: Ident
    line: Ident
    protocol: Literal["opcua", "modbus"]
    port: int | None = Field(
        None, ge=0, le=65535, description="a server of its own (0: free port); default: shared"
    )
    unit: int | None = Field(None, ge=0, le=255, description="Modbus unit id, default 1")
    base: int | None = Field(None, ge=0, le=65535, description="Modbus base address, default 0")
    byte_order: ByteOrder | None = Field(None, description="Modbus; default modbus.byte_order")
    cycle_time_s: float = Field(1.0, gt=0)
    reject_ratio: float = Field(0.0, ge=0, le=1, description="free running")
    states: Numbering = "packtags"
    counters: dict[CounterName, CounterSpec] = Field(
        default_factory=lambda: _good_and_reject(), min_length=1
    )
    order: str = ""
    order_length: int = Field(16, ge=1, le=250, description="bytes of the order string tag")
    order_every_parts: int = Field(0, ge=0, description="free running: next order after N parts")
    reset_on_order: bool = Field(False, description="free running: counters to 0 at a new order")
    random_stops: list[RandomStop] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> MachineSpec:
        if self.protocol != "modbus":
            given = [k for k in ("unit", "base", "byte_order") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} apply to modbus machines only")
        elif self.modbus_base + layout.modbus_span(self.order_length) > 1 << 16:
            raise ValueError("base leaves no room for the machine's registers below 65536")
        check_order(self.order, self.order_length)
        for stop in self.random_stops:
            state_code(self.states, stop.state_ref())
        return self

    @property
    def modbus_unit(self) -> int:
        return 1 if self.unit is None else self.unit

    @property
    def modbus_base(self) -> int:
        return 0 if self.base is None else self.base


@dataclass(frozen=True, slots=True)
class ServerKey:
    """Which server a machine is on: machines with equal keys share one."""

    protocol: Literal["opcua", "modbus"]
    port: int  # 0: a free port chosen at start
    owner: str = ""  # the machine that asked for a free port of its own


class SimConfig(Section):
    seed: int = Field(0, description="random stops and reject positions follow from it")
    opcua: OpcUaSection = OpcUaSection()
    modbus: ModbusSection = ModbusSection()
    machines: list[MachineSpec] = Field(min_length=1)

    def machine(self, machine_id: str) -> MachineSpec:
        for spec in self.machines:
            if spec.id == machine_id:
                return spec
        raise KeyError(machine_id)

    def server_key(self, spec: MachineSpec) -> ServerKey:
        shared = self.opcua.port if spec.protocol == "opcua" else self.modbus.port
        port = shared if spec.port is None else spec.port
        owner = spec.id if spec.port == 0 else ""
        return ServerKey(spec.protocol, port, owner)

    def host(self, spec: MachineSpec) -> str:
        return self.opcua.host if spec.protocol == "opcua" else self.modbus.host

    def byte_order(self, spec: MachineSpec) -> ByteOrder:
        return spec.byte_order or self.modbus.byte_order

    def problems(self, origin: str) -> list[str]:
        """What single-machine validation cannot see: duplicate ids, clashing ports, overlaps."""
        out: list[str] = []
        seen: dict[str, int] = {}
        by_port: dict[int, set[str]] = defaultdict(set)
        ranges: dict[tuple[ServerKey, int], list[tuple[int, int, int]]] = defaultdict(list)
        for i, spec in enumerate(self.machines):
            if spec.id in seen:
                out.append(f"{origin}: machines[{i}].id: duplicate of machines[{seen[spec.id]}]")
            seen.setdefault(spec.id, i)
            key = self.server_key(spec)
            if key.port:
                by_port[key.port].add(spec.protocol)
                if len(by_port[key.port]) > 1:
                    out.append(
                        f"{origin}: machines[{i}].port: {key.port} is given to OPC UA and Modbus"
                    )
            if spec.protocol == "modbus":
                start = spec.modbus_base
                span = layout.modbus_span(spec.order_length)
                for j, other_start, other_end in ranges[(key, spec.modbus_unit)]:
                    if start < other_end and other_start < start + span:
                        out.append(
                            f"{origin}: machines[{i}].base: registers {start}..{start + span - 1}"
                            f" overlap machines[{j}] on the same server and unit"
                        )
                ranges[(key, spec.modbus_unit)].append((i, start, start + span))
        return out


def load_sim_config(path: Path) -> SimConfig:
    """Read and validate; raises ConfigError naming the file and key of every problem."""
    data = read_toml(path)
    try:
        config = SimConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, path)) from exc
    problems = config.problems(str(path))
    if problems:
        raise ConfigError(problems)
    return config
