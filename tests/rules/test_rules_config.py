"""Rule configuration: defaults, and every dangling or contradictory key named with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

MACHINE = """
[[machines]]
id = "m1"
area = "a"
line = "l"
connector = { type = "opcua", endpoint = "opc.tcp://plc:4840" }
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    prefix = f"{path}: "
    assert all(p.startswith(prefix) for p in info.value.problems)
    return [p.removeprefix(prefix) for p in info.value.problems]


def test_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MACHINE)
    settings = load_config(path)
    rules = settings.rules
    assert (rules.count_interval_s, rules.micro_stop_s, rules.micro_stop_loss) == (
        10.0,
        120.0,
        "performance",
    )
    assert (rules.min_state_s, rules.down_after_cycles, rules.timezone) == (2.0, 3.0, "UTC")
    assert settings.shifts == {} and settings.reasons == [] and settings.state_tables == {}


def test_dangling_names_are_reported_with_their_key(tmp_path: Path) -> None:
    text = (
        """
[rules]
changeover_reason = "setup"

[[reasons]]
code = "E1"
text = "Jam"

[[reasons]]
code = "E1"
text = "Jam again"

[state_tables.packml-packtags]
codes = { "1" = "running" }
"""
        + MACHINE
        + """
state_table = "my-table"
shift_calendar = "weekdays"
mode_tag = "mode"
reason_map = { "7" = "E7" }

[[machines.reason_rules]]
reason = "tool_change"
tags = { door = true }

[machines.tags.state]
role = "state"
address = "ns=2;s=State"

[machines.tags.state2]
role = "state"
address = "ns=2;s=State2"
"""
    )
    assert problems(tmp_path, text) == [
        "reasons[1].code: duplicate reason code 'E1'",
        "rules.changeover_reason: no reason 'setup' in [[reasons]]",
        "state_tables.packml-packtags: name taken by a preset",
        "machines[0].tags.state2.role: a second state tag (first: state)",
        "machines[0].state_table: unknown state table 'my-table' "
        "(presets: packml-packtags, packml-opc30060, machinery)",
        "machines[0].mode_tag: no tag 'mode'",
        "machines[0].shift_calendar: no calendar [shifts.weekdays]",
        "machines[0].reason_map.7: no reason 'E7' in [[reasons]]",
        "machines[0].reason_rules[0].reason: no reason 'tool_change' in [[reasons]]",
        "machines[0].reason_rules[0].tags.door: no such tag",
    ]


def test_a_state_tag_needs_a_table(tmp_path: Path) -> None:
    text = (
        MACHINE
        + """
[machines.tags.state]
role = "state"
address = "ns=2;s=State"
"""
    )
    assert problems(tmp_path, text) == [
        "machines[0].state_table: a machine with a state tag needs state_table"
    ]


def test_shift_calendar_errors(tmp_path: Path) -> None:
    text = """
[rules]
timezone = "Europe/Atlantis"

[[shifts.default.shifts]]
name = "early"
days = ["mon-fri"]
start = "06:00"
end = "14:00"
breaks = [{ start = "13:30", end = "14:30" }]

[[shifts.default.shifts]]
name = "late"
days = ["fri"]
start = "13:00"
end = "22:00"

[[shifts.other.shifts]]
name = "x"
days = ["someday"]
start = "06:00"
end = "14:00"

[[shifts.other.exceptions]]
date = 2026-12-31
until = 2026-12-24
"""
    found = problems(tmp_path, text)
    assert found == [
        "rules.timezone: unknown time zone 'Europe/Atlantis' (IANA name, e.g. Europe/Berlin)",
        "shifts.default.shifts[0]: breaks[0]: must lie inside the shift and not be empty",
        "shifts.other.shifts[0].days[0]: must be one of mon, tue, wed, thu, fri, sat, sun",
        "shifts.other.exceptions[0]: until is before date",
    ]


def test_overlapping_shifts_are_refused(tmp_path: Path) -> None:
    text = """
[[shifts.default.shifts]]
name = "early"
days = ["mon"]
start = "06:00"
end = "14:00"

[[shifts.default.shifts]]
name = "late"
days = ["sun-mon"]
start = "13:00"
end = "22:00"
"""
    assert problems(tmp_path, text) == [
        "shifts.default: shifts early and late overlap on mon",
    ]


def test_reason_loss_follows_planned(tmp_path: Path) -> None:
    base = (
        MACHINE
        + """
[[reasons]]
code = "clean"
text = "Cleaning"
planned = true
"""
    )
    path = tmp_path / "ok.toml"
    path.write_text(base)
    [reason] = load_config(path).reasons
    assert reason.loss == "planned"
    assert problems(tmp_path, base + 'loss = "availability"\n') == [
        "reasons[0]: loss 'planned' goes with planned = true, and only with it"
    ]


def test_env_overrides_a_rules_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MACHINE)
    monkeypatch.setenv("MESGW_RULES__MICRO_STOP_S", "45")
    assert load_config(path).rules.micro_stop_s == 45.0
