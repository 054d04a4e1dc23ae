"""The clerk's command line: `mesgw review`, `correct`, `confirm`, `reopen`, `export`, `user`.

Commands talk to the store directly (as `mesgw report` does), as the user named by `--user`
(default: $MESGW_USER, else the login name), who must exist in `users`; every revision
written here says source `cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from gateway.config import DEFAULT_CONFIG, Settings, load_config
from gateway.logging import configure
from gateway.review import actions
from gateway.review.actions import Change
from gateway.review.errors import Invalid, NotFound
from gateway.review.export import Selection, export_confirmations
from gateway.review.queue import review_queue
from gateway.review.users import ROLES, actor, add_user, create_token, list_users
from gateway.store.db import connect

Command = Callable[[asyncpg.Connection, Settings, argparse.Namespace], Awaitable[int]]


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_config(args.config)
    configure(settings.logging.level, settings.logging.format, stream="stderr")
    return settings


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = _settings(args)

        async def main() -> int:
            conn = await connect(settings.store)
            try:
                await conn.execute("SET jit = off")
                return await command(conn, settings, args)
            finally:
                await conn.close()

        return asyncio.run(main())

    return run


def _user(args: argparse.Namespace) -> str:
    return str(args.user or os.environ.get("MESGW_USER") or getpass.getuser())


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from err
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        if "lineage" in value:
            return f"{value['start']} to {value['end']} (split from {value['split_from']})"
        if "reason_code" in value:
            return f"{value['reason_code']} ({value.get('reason_text') or ''})".replace(" ()", "")
        if "start" in value and "end" in value:
            return f"{value['start']} to {value['end']}"
    return str(value)


def print_change(change: Change) -> None:
    for r in change.revisions:
        key = json.loads(r["target_key"])
        print(
            f"revision {r['revision']} of {r['target']} {' '.join(str(k) for k in key)}:"
            f" {r['field']} {_show(r['old'])} -> {_show(r['new'])}"
            f"  ({r['user']}, {r['source']}: {r['reason']})"
        )


# --- review queue ----------------------------------------------------------------------------


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _hms(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _entry_line(e: dict[str, Any]) -> str:
    d = e["detail"]
    size = e["size"]
    kind = e["kind"]
    if kind == "held":
        what = f"held count {d['held_id']}: {d['reason']} of {d['counter']}, {size:g} parts claimed"
        what += f" (plausible {d['plausible_max']})" if d.get("plausible_max") is not None else ""
    elif kind == "flagged":
        what = f"count records flagged {d['quality']}: {d['records']}, {size:g} parts"
    elif kind == "downtime":
        what = f"downtime {d['downtime_id']} without reason, {_hms(size)}"
    elif kind == "quantity":
        what = (
            f"good + scrap {d['good'] + d['scrap']} vs quantity {d['quantity']}"
            f" ({size:+g}, tolerance {d['tolerance_pct']:g} %)"
        )
    elif kind == "mismatch":
        what = (
            f"total {d['total']} != good {d['good']} + reject {d['reject']}"
            f" in {d['records']} count records"
        )
    elif kind == "no_order":
        what = f"{_hms(size)} with no order"
    else:
        outages = d["outages"]
        what = f"link down {_hms(size)} ({outages} outage{'s' if outages != 1 else ''})"
    order = f"order {e['order_id']}" if e["order_id"] else "-"
    return f"  {e['machine']:<8} {order:<10} {what}\n{'':13}key {e['key']}"


async def cmd_queue(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    end = args.end or datetime.now(UTC)
    start = args.start or end - timedelta(days=s.review.queue_days)
    entries = await review_queue(
        conn,
        s.review,
        start=start,
        end=end,
        site=args.site,
        area=args.area,
        line=args.line,
        shift=args.shift,
        machine=args.machine,
    )
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    span = f"{_iso(start)} to {_iso(end)}"
    if not entries:
        print(f"review queue {span}: nothing to review")
        return 0
    print(f"review queue {span}: {len(entries)} entries")
    group = None
    for e in entries:
        head = (e["site"], e["area"], e["line"], e["shift_id"], e["kind"] == "quantity")
        if head != group:
            group = head
            if e["kind"] == "quantity":
                what = "orders ended"
            else:
                what = f"shift {e['shift_id']}" if e["shift_id"] else "(no shift)"
            print(f"{e['site']}/{e['area']}/{e['line']}  {what}")
        print(_entry_line(e))
    return 0


# --- corrections -----------------------------------------------------------------------------

_NUMBER = re.compile(r"^([+-]?)(\d+)$")


def _value(text: str) -> tuple[int | None, int | None]:
    match = _NUMBER.match(text)
    if match is None:
        raise Invalid(f"{text!r}: a whole number (1200), or a change (+5, -5)")
    number = int(match[2])
    if match[1] == "+":
        return None, number
    if match[1] == "-":
        return None, -number
    return number, None


async def cmd_correct_count(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    chosen = [(f, getattr(args, f)) for f in ("good", "scrap", "rework") if getattr(args, f)]
    if len(chosen) != 1:
        raise Invalid("give exactly one of --good, --scrap, --rework")
    figure, text = chosen[0]
    value, delta = _value(text)
    change = await actions.adjust(
        conn,
        await actor(conn, _user(args), "cli"),
        order_id=args.order,
        machine=args.machine,
        figure=figure,
        value=value,
        delta=delta,
        shift_id=args.shift,
        reason=args.reason,
        expected_revision=args.revision,
    )
    print_change(change)
    return 0


async def cmd_correct_move(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    chosen = [(f, getattr(args, f)) for f in ("good", "scrap", "rework") if getattr(args, f)]
    if len(chosen) != 1:
        raise Invalid("give exactly one of --good N, --scrap N, --rework N")
    figure, parts = chosen[0]
    change = await actions.move(
        conn,
        await actor(conn, _user(args), "cli"),
        order_id=args.order,
        machine=args.machine,
        to_order=args.to,
        figure=figure,
        parts=int(parts),
        reason=args.reason,
        expected_revision=args.revision,
    )
    print_change(change)
    return 0


async def cmd_correct_held(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    if (args.accept is None) == (not args.reject):
        raise Invalid("give --accept [N] or --reject")
    parts = None if args.accept in (None, "all") else int(args.accept)
    change = await actions.decide_held(
        conn,
        await actor(conn, _user(args), "cli"),
        held_id=args.held_id,
        accept=args.accept is not None,
        parts=parts,
        reason=args.reason,
        expected_revision=args.revision,
    )
    print_change(change)
    return 0


async def cmd_correct_reason(
    conn: asyncpg.Connection, s: Settings, args: argparse.Namespace
) -> int:
    change = await actions.recode(
        conn,
        await actor(conn, _user(args), "cli"),
        downtime_id=args.downtime_id,
        code=args.code,
        catalog=s.reasons,
        reason=args.reason,
        expected_revision=args.revision,
    )
    print_change(change)
    return 0


async def cmd_correct_split(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    change = await actions.split(
        conn,
        await actor(conn, _user(args), "cli"),
        downtime_id=args.downtime_id,
        at=args.at,
        reason=args.reason,
        expected_revision=args.revision,
    )
    print_change(change)
    return 0


async def cmd_correct_merge(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    change = await actions.merge(
        conn,
        await actor(conn, _user(args), "cli"),
        downtime_id=args.downtime_id,
        with_id=args.other,
        reason=args.reason,
        expected_revision=args.revision,
    )
    print_change(change)
    return 0


async def cmd_correct_ack(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    end = datetime.now(UTC)
    start = end - timedelta(days=s.review.queue_days)
    entries = await review_queue(conn, s.review, start=args.start or start, end=args.end or end)
    entry = next((e for e in entries if e["key"] == args.key), None)
    if entry is None:
        raise NotFound(f"no unresolved queue entry {args.key!r} (see `mesgw review queue`)")
    change = await actions.acknowledge(
        conn,
        await actor(conn, _user(args), "cli"),
        entry=args.key,
        fingerprint=entry["fingerprint"],
        reason=args.reason,
    )
    print_change(change)
    return 0


async def cmd_confirm(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    change = await actions.confirm(
        conn,
        await actor(conn, _user(args), "cli"),
        order_id=args.order,
        machine=args.machine,
        reason=args.reason,
        expected_revision=args.revision,
    )
    print_change(change)
    return 0


async def cmd_reopen(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    change = await actions.reopen(
        conn,
        await actor(conn, _user(args), "cli"),
        order_id=args.order,
        machine=args.machine,
        reason=args.reason,
        expected_revision=args.revision,
    )
    print_change(change)
    return 0


# --- export ----------------------------------------------------------------------------------


async def cmd_export(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    if args.order is None and (args.start is None or args.end is None):
        raise Invalid("give --order ORDER, or --from and --to")
    out = await export_confirmations(
        conn,
        await actor(conn, _user(args), "cli"),
        Selection(order=args.order, start=args.start, end=args.end),
        fmt=args.format,
        cfg=s.review.export,
        timezone=s.rules.timezone,
        check=args.check,
    )
    if args.out is not None:
        args.out.write_bytes(out.content)
    else:
        sys.stdout.buffer.write(out.content)
        sys.stdout.flush()
    for problem in out.problems:
        print(f"mesgw: not exported: {problem}", file=sys.stderr)
    verb = "would record" if args.check else "recorded"
    summary = f"{len(out.lines)} lines, {len(out.new)} new"
    if out.new and (args.check or out.run_id is not None):
        summary += f"; {verb} {len(out.new)} in the ledger"
        summary += f" (run {out.run_id})" if out.run_id is not None else ""
    print(f"mesgw: {summary}; sha256 {out.sha256}", file=sys.stderr)
    return 1 if out.problems else 0


# --- users -----------------------------------------------------------------------------------


async def cmd_user_add(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    await add_user(conn, args.name, args.role, args.display_name)
    print(f"user {args.name} added as {args.role}")
    return 0


async def cmd_user_token(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    token = await create_token(conn, args.name, args.label)
    print(token)
    print(f"mesgw: API token for {args.name}; it is shown only now", file=sys.stderr)
    return 0


async def cmd_user_list(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    for u in await list_users(conn):
        print(f"{u['name']:<20} {u['role']:<11} tokens {u['tokens']}  {u['display_name'] or ''}")
    return 0


async def cmd_user_passwd(conn: asyncpg.Connection, s: Settings, args: argparse.Namespace) -> int:
    """Set a user's login password for the review page: typed twice at a terminal, or one
    line on stdin with --password-stdin (for scripts; never as an argument, which `ps` and
    the shell history would show)."""
    from gateway.web.auth import set_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"new password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("mesgw: the two passwords differ; nothing changed", file=sys.stderr)
            return 1
    await set_password(conn, args.name, password)
    ended = await conn.execute("DELETE FROM web_sessions WHERE username = $1", args.name)
    print(f"password of {args.name} set; {ended.split()[-1]} open session(s) ended")
    return 0


# --- parser ----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.review.service import serve

    settings = load_config(args.config)
    configure(settings.logging.level, settings.logging.format)
    asyncio.run(serve(settings))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `review`, `correct`, `confirm`, `reopen`, `export` and `user` to `mesgw`."""

    def common(
        p: argparse.ArgumentParser, user: bool = True, inherit: bool = False
    ) -> argparse.ArgumentParser:
        # `mesgw review --config F queue` and `mesgw review queue --config F` both work: a
        # subcommand's own default would overwrite the parent's value.
        p.add_argument(
            "--config",
            type=Path,
            default=argparse.SUPPRESS if inherit else DEFAULT_CONFIG,
            help=f"default {DEFAULT_CONFIG}",
        )
        if user:
            p.add_argument("--user", help="who does it (default: $MESGW_USER, else login name)")
        return p

    def edit(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        common(p)
        p.add_argument("--reason", help="why (required; kept with the revision)")
        p.add_argument(
            "--revision",
            type=int,
            help="the target's revision the edit is based on (conflict if it has moved on)",
        )
        return p

    review = common(
        sub.add_parser(
            "review",
            help="the review service, or the review queue",
            description="Without a subcommand: run the review service (HTTP API /api/v1/).",
        ),
        user=False,
    )
    review.set_defaults(func=cmd_serve)
    review_sub = review.add_subparsers(dest="review_command")
    queue = common(
        review_sub.add_parser("queue", help="what needs a clerk, per line and shift"), inherit=True
    )
    queue.add_argument("--from", dest="start", type=_time, metavar="TIME")
    queue.add_argument("--to", dest="end", type=_time, metavar="TIME")
    for name in ("site", "area", "line", "shift", "machine"):
        queue.add_argument(f"--{name}")
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(func=_run(cmd_queue))

    correct = sub.add_parser("correct", help="correct counts, held counts, downtimes")
    c_sub = correct.add_subparsers(dest="correct_command", required=True)
    count = edit(c_sub.add_parser("count", help="set good/scrap/rework of an order (or a shift)"))
    count.add_argument("order")
    count.add_argument("--machine", help="machine id or site/area/line/machine")
    count.add_argument("--shift", help="correct the order within this shift")
    for f in ("good", "scrap", "rework"):
        count.add_argument(f"--{f}", metavar="N|+N|-N")
    count.set_defaults(func=_run(cmd_correct_count))

    move = edit(c_sub.add_parser("move", help="move parts to another order on the machine"))
    move.add_argument("order")
    move.add_argument("--to", required=True, metavar="ORDER")
    move.add_argument("--machine")
    for f in ("good", "scrap", "rework"):
        move.add_argument(f"--{f}", type=int, metavar="N")
    move.set_defaults(func=_run(cmd_correct_move))

    held = edit(c_sub.add_parser("held", help="accept (all or N parts) or reject a held count"))
    held.add_argument("held_id")
    held.add_argument("--accept", nargs="?", const="all", metavar="N")
    held.add_argument("--reject", action="store_true")
    held.set_defaults(func=_run(cmd_correct_held))

    reason = edit(c_sub.add_parser("reason", help="set a downtime's reason (catalog code)"))
    reason.add_argument("downtime_id")
    reason.add_argument("code")
    reason.set_defaults(func=_run(cmd_correct_reason))

    split = edit(c_sub.add_parser("split", help="split a downtime at a time"))
    split.add_argument("downtime_id")
    split.add_argument("--at", type=_time, required=True, metavar="TIME")
    split.set_defaults(func=_run(cmd_correct_split))

    merge = edit(c_sub.add_parser("merge", help="merge two adjacent downtimes"))
    merge.add_argument("downtime_id")
    merge.add_argument("other")
    merge.set_defaults(func=_run(cmd_correct_merge))

    ack = edit(c_sub.add_parser("ack", help="resolve a queue entry without a correction"))
    ack.add_argument("key")
    ack.add_argument("--from", dest="start", type=_time, metavar="TIME")
    ack.add_argument("--to", dest="end", type=_time, metavar="TIME")
    ack.set_defaults(func=_run(cmd_correct_ack))

    confirm = edit(sub.add_parser("confirm", help="confirm an order (locks it)"))
    confirm.add_argument("order")
    confirm.add_argument("--machine", help="only this operation")
    confirm.set_defaults(func=_run(cmd_confirm))

    reopen = edit(sub.add_parser("reopen", help="reopen a confirmed order (supervisor)"))
    reopen.add_argument("order")
    reopen.add_argument("--machine", help="only this operation")
    reopen.set_defaults(func=_run(cmd_reopen))

    export = sub.add_parser("export", help="ERP exports")
    e_sub = export.add_subparsers(dest="export_command", required=True)
    conf = common(e_sub.add_parser("confirmations", help="confirmations per order and operation"))
    conf.add_argument("--order")
    conf.add_argument("--from", dest="start", type=_time, metavar="TIME", help="orders ended from")
    conf.add_argument("--to", dest="end", type=_time, metavar="TIME", help="orders ended before")
    conf.add_argument("--format", choices=("csv", "json"), default="csv")
    conf.add_argument("--check", action="store_true", help="validate; record nothing")
    conf.add_argument("--out", type=Path, help="write the file here (default: stdout)")
    conf.set_defaults(func=_run(cmd_export))

    user = sub.add_parser("user", help="users and API tokens of the review service")
    u_sub = user.add_subparsers(dest="user_command", required=True)
    add = common(u_sub.add_parser("add", help="add a user"), user=False)
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--display-name")
    add.set_defaults(func=_run(cmd_user_add))
    token = common(u_sub.add_parser("token", help="create an API token (shown once)"), user=False)
    token.add_argument("name")
    token.add_argument("--label")
    token.set_defaults(func=_run(cmd_user_token))
    passwd = common(
        u_sub.add_parser("passwd", help="set a user's password for the review page"), user=False
    )
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    passwd.set_defaults(func=_run(cmd_user_passwd))
    listing = common(u_sub.add_parser("list", help="list users"), user=False)
    listing.set_defaults(func=_run(cmd_user_list))
