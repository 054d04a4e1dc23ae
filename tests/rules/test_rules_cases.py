"""The data-driven rules cases: every event the engine makes, field by field (rules_cases.py)."""

from __future__ import annotations

import pytest
from rules_cases import case_names, mismatches, read_expected, run_case


@pytest.mark.parametrize("name", case_names())
def test_case(name: str) -> None:
    run = run_case(name)
    problems = mismatches(read_expected(name), run.drafts)
    assert not problems, f"case {name}:\n" + "\n".join(problems)
