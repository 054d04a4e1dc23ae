"""Scenario files: per machine, a list of steps the line executes in real time.

```toml
end = "idle"            # after its last step a machine goes idle ("free": runs at random)
[steps]
filler-1 = [
  { do = "order", order = "WO-1001" },
  { do = "run", parts = 137, rejects = 5 },
  { do = "fault", reason = 42, seconds = 30 },
  { do = "reset" },
]
```

Steps: `run` (parts = N or seconds = D at the cycle time, `rejects` of them rejects, optional
`cycle_s`), `stop` (seconds, state, reason), `fault` (seconds, reason, state), `idle` (seconds),
`wait` (seconds: nothing changes, nothing is made), `reset` (counter, default all), `set`
(counter, value), `order` (order), `drop` (seconds, mode). A drop does not hold the machine up:
the next step starts at once, so a machine can go on making parts while nobody can see it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from common.config import Ident, Section, format_errors, read_toml
from common.errors import ConfigError
from connectors.simulator.config import (
    CounterName,
    ReasonCode,
    SimConfig,
    StateRef,
    check_order,
)
from connectors.simulator.states import state_code
from connectors.simulator.truth import DropMode

Seconds = Annotated[float, Field(gt=0)]


class RunStep(Section):
    """Make `parts` parts, or run `seconds` making one part per cycle; `rejects` are scrap."""

    do: Literal["run"]
    parts: int | None = Field(None, ge=1)
    seconds: Seconds | None = None
    rejects: int = Field(0, ge=0)
    cycle_s: Seconds | None = Field(None, description="default: the machine's cycle_time_s")

    @model_validator(mode="after")
    def _amount(self) -> RunStep:
        if (self.parts is None) == (self.seconds is None):
            raise ValueError("give parts or seconds")
        if self.parts is not None and self.rejects > self.parts:
            raise ValueError("rejects exceed parts")
        return self

    def part_count(self, cycle_s: float) -> int:
        """Parts made: given, or whole cycles in `seconds` (a part needs a full cycle)."""
        if self.parts is not None:
            return self.parts
        assert self.seconds is not None
        return int(self.seconds / cycle_s + 1e-9)


class StopStep(Section):
    do: Literal["stop"]
    seconds: Seconds
    state: StateRef = "stopped"
    reason: ReasonCode = 0


class FaultStep(Section):
    do: Literal["fault"]
    seconds: Seconds
    reason: ReasonCode
    state: StateRef = "aborted"


class IdleStep(Section):
    do: Literal["idle"]
    seconds: Seconds


class WaitStep(Section):
    do: Literal["wait"]
    seconds: Seconds


class ResetStep(Section):
    do: Literal["reset"]
    counter: CounterName | None = None


class SetStep(Section):
    do: Literal["set"]
    counter: CounterName
    value: int = Field(ge=0)


class OrderStep(Section):
    do: Literal["order"]
    order: str


class DropStep(Section):
    """The machine's server stops answering for `seconds`; the machine itself goes on."""

    do: Literal["drop"]
    seconds: Seconds
    mode: DropMode = Field(
        "close", description="close: server down, connections closed; silent: no answers"
    )


Step = Annotated[
    RunStep
    | StopStep
    | FaultStep
    | IdleStep
    | WaitStep
    | ResetStep
    | SetStep
    | OrderStep
    | DropStep,
    Field(discriminator="do"),
]
STEP_KINDS = ("run", "stop", "fault", "idle", "wait", "reset", "set", "order", "drop")


class Scenario(Section):
    end: Literal["idle", "free"] = "idle"
    steps: dict[Ident, list[Step]] = Field(default_factory=dict)


def _step_problems(config: SimConfig, machine: str, step: Step) -> list[tuple[str, str]]:
    """(key, message) of what a step asks that this machine cannot do."""
    spec = config.machine(machine)
    out: list[tuple[str, str]] = []
    if isinstance(step, StopStep | FaultStep):
        try:
            state_code(spec.states, step.state)
        except ValueError as err:
            out.append(("state", str(err)))
    elif isinstance(step, RunStep):
        if step.rejects > step.part_count(step.cycle_s or spec.cycle_time_s):
            out.append(("rejects", "exceed the parts made in seconds at the cycle time"))
    elif isinstance(step, ResetStep | SetStep):
        if step.counter is not None and step.counter not in spec.counters:
            have = ", ".join(spec.counters)
            out.append(("counter", f"{machine} has no {step.counter} counter (it has {have})"))
        elif isinstance(step, SetStep) and step.value >= (
            wrap := spec.counters[step.counter].wrap_at
        ):
            out.append(("value", f"must be below the wrap value {wrap}"))
    elif isinstance(step, OrderStep):
        try:
            check_order(step.order, spec.order_length)
        except ValueError as err:
            out.append(("order", str(err)))
    elif isinstance(step, DropStep) and step.mode == "silent" and spec.protocol != "modbus":
        out.append(("mode", "silent drops are Modbus only; OPC UA drops close the server"))
    return out


def check_scenario(scenario: Scenario, config: SimConfig, origin: str) -> list[str]:
    """Every problem of running `scenario` on the line of `config`, as `origin: key: message`."""
    known = {spec.id for spec in config.machines}
    out: list[str] = []
    for machine, steps in scenario.steps.items():
        if machine not in known:
            out.append(f"{origin}: steps.{machine}: no such machine in the line's configuration")
            continue
        for i, step in enumerate(steps):
            for key, message in _step_problems(config, machine, step):
                out.append(f"{origin}: steps.{machine}[{i}].{key}: {message}")
    return out


def _without_step_tags(exc: ValidationError) -> ValidationError:
    """Drop the union branch names pydantic puts in error paths (`steps.m[2].run.parts`)."""
    details: list[InitErrorDetails] = []
    for err in exc.errors():
        loc = err["loc"]
        loc = tuple(
            part
            for i, part in enumerate(loc)
            if not (part in STEP_KINDS and i > 0 and isinstance(loc[i - 1], int))
        )
        detail: dict[str, Any] = {"type": err["type"], "loc": loc, "input": err["input"]}
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        details.append(detail)  # type: ignore[arg-type]
    return ValidationError.from_exception_data(exc.title, details)


def parse_scenario(data: dict[str, Any], config: SimConfig, origin: str) -> Scenario:
    """Validate scenario data against the line; raises ConfigError listing every problem."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(_without_step_tags(exc), Path(origin))) from exc
    problems = check_scenario(scenario, config, origin)
    if problems:
        raise ConfigError(problems)
    return scenario


def load_scenario(path: Path, config: SimConfig) -> Scenario:
    """Read a scenario file and check it against the line it is to run on."""
    return parse_scenario(read_toml(path), config, str(path))
