"""`mesgw order start|stop|list|import`: a client of the running daemon's work-order API.

The API address and token come from the gateway's configuration (`api.host`, `api.port`,
`api.token`/`api.token_file`) when it is readable, else from `--api` and `--token-file` or
`MESGW_API__TOKEN`. There is no `--token VALUE`: a token on the command line is visible to
every user in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_CONFIG, Settings, load_config
from gateway.errors import GatewayError

EXIT_OK = 0
EXIT_ERROR = 1
DEFAULT_API = "http://127.0.0.1:8080"
TOKEN_ENV = "MESGW_API__TOKEN"


class CliError(GatewayError):
    """The API could not be asked, or refused the request; the message says which."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `mesgw order …` to the top-level subcommands."""
    order = sub.add_parser(
        "order",
        help="start, stop, list or import work orders (through the running daemon's API)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    order_sub = order.add_subparsers(dest="order_command", required=True)

    start = _add(order_sub, "start", "start a work order on a machine")
    start.add_argument("machine", help="machine id")
    start.add_argument("order_id", help="work order number")
    start.add_argument("--product")
    start.add_argument("--quantity", type=int, help="planned quantity")
    start.add_argument(
        "--ideal-cycle-time", type=float, dest="ideal_cycle_time_s", metavar="SECONDS"
    )

    stop = _add(order_sub, "stop", "complete the work order running on a machine")
    stop.add_argument("machine", help="machine id")
    stop.add_argument("order_id", nargs="?", help="the order expected to run (checked)")

    listing = _add(order_sub, "list", "show the active order of each machine and planned ones")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")

    imports = _add(order_sub, "import", "import a schedule CSV (all rows or none)")
    imports.add_argument("file", help="CSV file, or - for standard input")


def _add(
    parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
) -> argparse.ArgumentParser:
    p = parent.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=run)
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"gateway configuration to take the API address and token from "
        f"(default {DEFAULT_CONFIG}, if readable)",
    )
    p.add_argument("--api", help=f"API base URL (default from the config, else {DEFAULT_API})")
    p.add_argument("--token-file", type=Path, help=f"bearer token file (else ${TOKEN_ENV})")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run one `mesgw order` subcommand; prints the outcome, returns the exit code."""
    try:
        base, token = _target(args)
        return _COMMANDS[args.order_command](args, base, token)
    except CliError as err:
        print(f"mesgw: {err}", file=sys.stderr)
        return EXIT_ERROR


def _target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The API base URL and token: flags, then environment, then the gateway's config."""
    token: str | None = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise CliError(f"cannot read token file {args.token_file}: {err.strerror}") from err
    token = token or os.environ.get(TOKEN_ENV) or None
    settings: Settings | None = None
    path = args.config or DEFAULT_CONFIG
    if (args.api is None or token is None) and (
        args.config is not None or os.access(path, os.R_OK)
    ):
        settings = load_config(path)  # a ConfigError is reported by `mesgw` itself
    base = args.api
    if base is None:
        base = DEFAULT_API if settings is None else _base_url(settings)
    if token is None and settings is not None and settings.api.token is not None:
        token = settings.api.token.get_secret_value()
    return base.rstrip("/"), token


def _base_url(settings: Settings) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        settings.api.host, settings.api.host
    )
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.api.port}"


def _call(
    method: str,
    url: str,
    token: str | None,
    timeout: float,
    *,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    """One request; (HTTP status, JSON object answered), or CliError saying what went wrong."""
    return asyncio.run(_request(method, url, token, timeout, body, content_type))


async def _request(
    method: str,
    url: str,
    token: str | None,
    timeout: float,
    body: bytes | None,
    content_type: str,
) -> tuple[int, dict[str, Any]]:
    import aiohttp  # only `mesgw order` needs it; the other commands start faster without

    headers = {"X-Mesgw-Client": "cli", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.request(method, url, data=body, headers=headers) as resp,
        ):
            text = await resp.text(errors="replace")
            status = resp.status
    except TimeoutError as err:
        raise CliError(f"no answer from the order API at {url} within {timeout:g} s") from err
    except aiohttp.ClientError as err:
        raise CliError(
            f"cannot reach the order API at {url}: {err} "
            "(is `mesgw run` running, with api.enabled?)"
        ) from err
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if status == 401:
        raise CliError(
            f"the order API refused the token ({url}); give --token-file or ${TOKEN_ENV}"
        )
    if not isinstance(data, dict):
        raise CliError(f"unexpected answer from {url}: HTTP {status} {text[:200]!r}")
    return status, data


def _machine_url(base: str, machine: str, action: str) -> str:
    return f"{base}/api/v1/machines/{urllib.parse.quote(machine, safe='')}/order/{action}"


def _start(args: argparse.Namespace, base: str, token: str | None) -> int:
    fields = ("order_id", "product", "quantity", "ideal_cycle_time_s")
    body = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    url = _machine_url(base, args.machine, "start")
    _, data = _call("POST", url, token, args.timeout, body=json.dumps(body).encode())
    return _outcome(data, "start")


def _stop(args: argparse.Namespace, base: str, token: str | None) -> int:
    body = {"order_id": args.order_id} if args.order_id else {}
    url = _machine_url(base, args.machine, "stop")
    _, data = _call("POST", url, token, args.timeout, body=json.dumps(body).encode())
    return _outcome(data, "stop")


def _outcome(data: dict[str, Any], action: str) -> int:
    machine = data.get("machine") or "?"
    if data.get("ok"):
        order = data.get("order_id") or "-"
        print(f"{machine}: order {order} {data.get('status') or 'done'}")
        return EXIT_OK
    print(f"mesgw: {machine}: order {action} refused: {data.get('error')}", file=sys.stderr)
    return EXIT_ERROR


def _list(args: argparse.Namespace, base: str, token: str | None) -> int:
    status, data = _call("GET", f"{base}/api/v1/orders", token, args.timeout)
    if status != 200 or not isinstance(data.get("orders"), list):
        raise CliError(f"order list failed: HTTP {status}: {data.get('error')}")
    orders: list[dict[str, Any]] = data["orders"]
    if args.json:
        print(json.dumps(orders, indent=2))
        return EXIT_OK
    columns = ("machine", "order_id", "status", "product", "quantity")
    rows = [[_cell(o.get(c)) for c in columns] for o in orders]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for row in [[c.upper() for c in columns], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _import(args: argparse.Namespace, base: str, token: str | None) -> int:
    if args.file == "-":
        body = sys.stdin.buffer.read()
    else:
        try:
            body = Path(args.file).read_bytes()
        except OSError as err:
            raise CliError(f"cannot read {args.file}: {err.strerror}") from err
    _, data = _call(
        "POST",
        f"{base}/api/v1/orders/import",
        token,
        args.timeout,
        body=body,
        content_type="text/csv; charset=utf-8",
    )
    if data.get("ok"):
        print(f"{args.file}: {data.get('planned')} orders planned")
        return EXIT_OK
    print(f"mesgw: {args.file}: {data.get('error')}", file=sys.stderr)
    for problem in data.get("problems") or []:
        print(f"{args.file}: {problem}", file=sys.stderr)
    return EXIT_ERROR


_COMMANDS = {"start": _start, "stop": _stop, "list": _list, "import": _import}
