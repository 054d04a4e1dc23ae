"""The CSV schedule: rows → planned orders, the whole file refused on any error, line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from orders_support import MemoryDesk, settings_for

from gateway.config import OrdersSection
from gateway.events import now_utc
from gateway.orders.schedule import (
    ScheduleError,
    import_startup_schedule,
    parse_schedule,
    read_schedule,
)
from rules.inputs import OrderCommand, PlannedOrder

MACHINES = {"filler-1", "capper-1"}


def problems(text: str) -> list[str]:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text, machines=MACHINES)
    return info.value.problems


def test_rows_become_planned_orders() -> None:
    text = (
        "order_id,product,quantity,ideal_cycle_time_s,machine\n"
        "WO-1001,Bottle 0.5 l,12000,0.5,filler-1\n"
        "WO-1002,Bottle 1 l,6000,,\n"
        '"WO-1003","Cap, blue",500,1.25,capper-1\n'
    )
    assert parse_schedule(text, machines=MACHINES) == [
        PlannedOrder("WO-1001", "Bottle 0.5 l", 12000, 0.5, "filler-1"),
        PlannedOrder("WO-1002", "Bottle 1 l", 6000, None, None),
        PlannedOrder("WO-1003", "Cap, blue", 500, 1.25, "capper-1"),
    ]


def test_columns_in_any_order_and_case_machine_optional() -> None:
    text = "Quantity , ORDER_ID,ideal_cycle_time_s,product\r\n10,A,2,P\r\n\r\n20,B,,Q\r\n"
    assert parse_schedule(text) == [
        PlannedOrder("A", "P", 10, 2.0),
        PlannedOrder("B", "Q", 20, None),
    ]


def test_spreadsheet_export_with_semicolons_decimal_commas_and_bom() -> None:
    text = "\ufefforder_id;product;quantity;ideal_cycle_time_s\nWO-1;Flasche 0,5 l;100;0,75\n"
    assert parse_schedule(text) == [PlannedOrder("WO-1", "Flasche 0,5 l", 100, 0.75)]


def test_every_problem_is_listed_with_its_line_and_nothing_is_returned() -> None:
    text = (
        "order_id,product,quantity,ideal_cycle_time_s,machine\n"
        "WO-1,P,10,0.5,filler-1\n"  # line 2: fine, yet not imported
        ",P,10,,\n"  # 3
        "WO-3,,abc,-1,press-9\n"  # 4
        "WO-4,P,1.5,x,\n"  # 5
        "WO-1,P,10,,\n"  # 6: duplicate of line 2
        "WO-7,P,10\n"  # 7: short row
        "WO-8,P,0,inf,\n"  # 8
    )
    assert problems(text) == [
        "line 3: order_id: required",
        "line 4: product: required",
        "line 4: quantity: 'abc' is not a whole number from 1 to 1,000,000,000,000",
        "line 4: ideal_cycle_time_s: '-1' is not a number of seconds > 0",
        "line 4: machine: 'press-9' is not a machine of this gateway",
        "line 5: quantity: '1.5' is not a whole number from 1 to 1,000,000,000,000",
        "line 5: ideal_cycle_time_s: 'x' is not a number of seconds > 0",
        "line 6: order_id: 'WO-1' already on line 2",
        "line 7: 3 fields, the header has 5",
        "line 8: quantity: '0' is not a whole number from 1 to 1,000,000,000,000",
        "line 8: ideal_cycle_time_s: 'inf' is not a number of seconds > 0",
    ]


def test_line_numbers_count_quoted_line_breaks() -> None:
    text = 'order_id,product,quantity,ideal_cycle_time_s\nA,"two\nlines",1,\nB,P,-3,\n'
    assert problems(text) == [
        "line 2: product: must be 1-200 printable characters",
        "line 4: quantity: '-3' is not a whole number from 1 to 1,000,000,000,000",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file: a header row and at least one order are required"),
        ("\n\n", "empty file: a header row and at least one order are required"),
        (
            "WO-1,P,10,0.5\n",
            "line 1: no header: the first row must name the columns order_id, product, "
            "quantity, ideal_cycle_time_s (and optionally machine)",
        ),
        (
            "order_id,product,qty,quantity,ideal_cycle_time_s\n",
            "line 1: unknown column 'qty' (columns: order_id, product, quantity, "
            "ideal_cycle_time_s, machine)",
        ),
        ("order_id,product,quantity\nA,P,1\n", "line 1: header lacks column ideal_cycle_time_s"),
        (
            "order_id,product,quantity,ideal_cycle_time_s,product\n",
            "line 1: column product given twice",
        ),
        (
            "order_id,product,quantity,ideal_cycle_time_s\n",
            "no orders: the file has a header but no rows",
        ),
        (
            'order_id,product,quantity,ideal_cycle_time_s\n"A,P,1,\n',
            "line 2: not valid CSV: unexpected end of data",
        ),
        (
            "order_id,product,quantity,ideal_cycle_time_s\nA B\x07,P,1,\n",
            "line 2: order_id: must be 1-64 printable characters",
        ),
    ],
)
def test_file_level_problems(text: str, problem: str) -> None:
    assert problems(text) == [problem]


def test_problem_list_is_bounded() -> None:
    rows = "".join(f"WO-{i},P,zero,\n" for i in range(200))
    listed = problems("order_id,product,quantity,ideal_cycle_time_s\n" + rows)
    assert len(listed) == 51 and listed[-1] == "… and 150 more problems"


def test_machines_are_not_checked_without_a_list() -> None:
    text = "order_id,product,quantity,ideal_cycle_time_s,machine\nA,P,1,,anything\n"
    assert parse_schedule(text)[0].machine == "anything"


def test_read_schedule_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(ScheduleError) as info:
        read_schedule(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("order_id,product,quantity,ideal_cycle_time_s\nA,Käse,1,\n".encode("latin-1"))
    with pytest.raises(ScheduleError) as info:
        read_schedule(latin)
    assert str(info.value) == f"{latin}: line 2: not UTF-8 text; save the CSV as UTF-8"


async def test_startup_import_plans_the_file(tmp_path: Path, desk: MemoryDesk) -> None:
    path = tmp_path / "schedule.csv"
    path.write_text("order_id,product,quantity,ideal_cycle_time_s,machine\nA,P,5,,filler-1\n")
    settings = settings_for().model_copy(update={"orders": OrdersSection(schedule_csv=path)})
    assert await import_startup_schedule(settings, desk) == 1
    assert desk.planned == {"A": PlannedOrder("A", "P", 5, None, "filler-1")}


async def test_startup_import_of_a_wrong_file_plans_nothing_and_goes_on(
    tmp_path: Path, desk: MemoryDesk
) -> None:
    path = tmp_path / "schedule.csv"
    path.write_text("order_id,product,quantity,ideal_cycle_time_s,machine\nA,P,5,,\nB,P,5,,x\n")
    settings = settings_for().model_copy(update={"orders": OrdersSection(schedule_csv=path)})
    assert await import_startup_schedule(settings, desk) == 0
    assert desk.planned == {}
    # The desk's own refusal (an order already started) is logged the same way.
    path.write_text("order_id,product,quantity,ideal_cycle_time_s\nA,P,5,\n")
    await desk.submit(OrderCommand("filler-1", "start", now_utc(), "http", "A"))
    assert await import_startup_schedule(settings, desk) == 0
    assert desk.planned == {}


async def test_no_startup_schedule_configured(desk: MemoryDesk) -> None:
    assert await import_startup_schedule(settings_for(), desk) == 0
