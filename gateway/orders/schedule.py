"""The order schedule as CSV: one planned order per row, checked whole before anything is planned.

```
order_id,product,quantity,ideal_cycle_time_s,machine
WO-1001,Bottle 0.5 l,12000,0.5,filler-1
WO-1002,Bottle 1 l,6000,,
```

The header is required and names the columns (any order, any case): `order_id`, `product`,
`quantity` and `ideal_cycle_time_s` must be there, `machine` may be. Every row needs an
order id, a product and a quantity (a whole number ≥ 1); an empty ideal cycle time means the
machine's own, an empty machine means any machine. Spreadsheets that save with `;` (and a
decimal comma) are read too. A file with any wrong row is refused as a whole, every problem
listed with its line number, so a schedule is never half imported.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.logging import get_logger
from gateway.orders.commands import MAX_QUANTITY, OrderId, Product
from gateway.orders.desk import OrderDesk, ScheduleRejected
from rules.inputs import PlannedOrder

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

log = get_logger("gateway.orders.schedule")

REQUIRED = ("order_id", "product", "quantity", "ideal_cycle_time_s")
COLUMNS = (*REQUIRED, "machine")
# A schedule is a few hundred rows; this bounds what one import may hold in memory.
MAX_ROWS = 100_000
MAX_PROBLEMS = 50

_DIGITS = re.compile(r"[0-9]+")
_order_id = TypeAdapter(OrderId)
_product = TypeAdapter(Product)


class ScheduleError(GatewayError):
    """The schedule cannot be imported; `problems` lists every `line N: column: message`."""

    def __init__(self, problems: list[str], *, source: str = "schedule") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + f"\n{source}: ".join(problems))


def parse_schedule(
    text: str, *, machines: Collection[str] | None = None, source: str = "schedule"
) -> list[PlannedOrder]:
    """Rows of a schedule CSV → planned orders; raises ScheduleError listing every problem.

    `machines`, when given, is the set of machine ids a row may name.
    """
    text = text.removeprefix("\ufeff")  # Excel's UTF-8 byte order mark
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    problems: list[str] = []
    try:
        header = _header(reader, problems)
        if header is None:
            raise ScheduleError(problems, source=source)
        orders = _rows(reader, header, delimiter, machines, problems)
    except csv.Error as err:
        problems.append(f"line {reader.line_num}: not valid CSV: {err}")
        orders = []
    if problems:
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], f"… and {more} more problems"]
        raise ScheduleError(problems, source=source)
    return orders


def read_schedule(path: Path, *, machines: Collection[str] | None = None) -> list[PlannedOrder]:
    """A schedule file → planned orders; raises ScheduleError (unreadable file included)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ScheduleError([f"cannot read: {err.strerror}"], source=str(path)) from err
    return parse_schedule(decode_schedule(data, str(path)), machines=machines, source=str(path))


def decode_schedule(data: bytes, source: str = "schedule") -> str:
    """The CSV's text; raises ScheduleError naming the first line that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ScheduleError(
            [f"line {line}: not UTF-8 text; save the CSV as UTF-8"], source=source
        ) from err


def _header(reader: CsvReader, problems: list[str]) -> dict[str, int] | None:
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        names = [cell.strip().lower() for cell in row]
        line = reader.line_num
        if not set(names) & set(COLUMNS):
            problems.append(
                f"line {line}: no header: the first row must name the columns "
                f"{', '.join(REQUIRED)} (and optionally machine)"
            )
            return None
        unknown = [n for n in names if n not in COLUMNS]
        missing = [n for n in REQUIRED if n not in names]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if unknown:
            problems.append(
                f"line {line}: unknown column {', '.join(map(repr, unknown))} "
                f"(columns: {', '.join(COLUMNS)})"
            )
        if missing:
            problems.append(f"line {line}: header lacks column {', '.join(missing)}")
        if dupes:
            problems.append(f"line {line}: column {', '.join(dupes)} given twice")
        if problems:
            return None
        return {name: index for index, name in enumerate(names)}
    problems.append("empty file: a header row and at least one order are required")
    return None


def _rows(
    reader: CsvReader,
    header: dict[str, int],
    delimiter: str,
    machines: Collection[str] | None,
    problems: list[str],
) -> list[PlannedOrder]:
    orders: list[PlannedOrder] = []
    first_line: dict[str, int] = {}
    end = reader.line_num  # the last line read so far
    for row in reader:
        # A quoted field may span lines: a row is named by the line it starts on.
        line, end = end + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(orders) >= MAX_ROWS:
            problems.append(f"line {line}: more than {MAX_ROWS} orders in one file")
            break
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} fields, the header has {len(header)}")
            continue
        cells = {name: row[index].strip() for name, index in header.items()}
        before = len(problems)
        order = _order(cells, line, delimiter, machines, problems)
        if order is None or len(problems) > before:
            continue
        if order.order_id in first_line:
            problems.append(
                f"line {line}: order_id: {order.order_id!r} already on line "
                f"{first_line[order.order_id]}"
            )
            continue
        first_line[order.order_id] = line
        orders.append(order)
    if not orders and not problems:
        problems.append("no orders: the file has a header but no rows")
    return orders


def _order(
    cells: dict[str, str],
    line: int,
    delimiter: str,
    machines: Collection[str] | None,
    problems: list[str],
) -> PlannedOrder | None:
    def bad(column: str, message: str) -> None:
        problems.append(f"line {line}: {column}: {message}")

    order_id = cells["order_id"]
    if not order_id:
        bad("order_id", "required")
    else:
        try:
            _order_id.validate_python(order_id)
        except ValidationError:
            bad("order_id", "must be 1-64 printable characters")
    product = cells["product"]
    if not product:
        bad("product", "required")
    else:
        try:
            _product.validate_python(product)
        except ValidationError:
            bad("product", "must be 1-200 printable characters")
    quantity: int | None = None
    if not cells["quantity"]:
        bad("quantity", "required")
    elif (
        not _DIGITS.fullmatch(cells["quantity"]) or not 1 <= int(cells["quantity"]) <= MAX_QUANTITY
    ):
        bad("quantity", f"{cells['quantity']!r} is not a whole number from 1 to {MAX_QUANTITY:,}")
    else:
        quantity = int(cells["quantity"])
    cycle: float | None = None
    if raw := cells["ideal_cycle_time_s"]:
        number = raw.replace(",", ".") if delimiter == ";" else raw
        try:
            cycle = float(number)
        except ValueError:
            cycle = None
        if cycle is None or not math.isfinite(cycle) or cycle <= 0:
            bad("ideal_cycle_time_s", f"{raw!r} is not a number of seconds > 0")
            cycle = None
    machine = cells.get("machine") or None
    if machine is not None and machines is not None and machine not in machines:
        bad("machine", f"{machine!r} is not a machine of this gateway")
    return PlannedOrder(
        order_id=order_id,
        product=product,
        quantity=quantity,
        ideal_cycle_time_s=cycle,
        machine=machine,
    )


async def import_startup_schedule(settings: Settings, desk: OrderDesk) -> int:
    """Plan `orders.schedule_csv`, if set; returns how many orders were planned.

    A wrong file is logged with every problem and nothing of it is planned; the gateway
    runs on (counts are then recorded as "no order" until orders are started).
    """
    path = settings.orders.schedule_csv
    if path is None:
        return 0
    try:
        orders = read_schedule(path, machines={m.id for m in settings.machines})
        planned = await desk.plan(orders)
    except (ScheduleError, ScheduleRejected) as err:
        problems = err.problems if isinstance(err, ScheduleError) else [str(err)]
        log.error("schedule not imported", path=str(path), problems=problems)
        return 0
    log.info("schedule imported", path=str(path), orders=planned)
    return planned
