"""`mesgw`: the MES data-collection gateway's commands (every one is listed below)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from connectors.modbus.cli import register as register_modbus
from connectors.simulator.cli import register as register_simulate
from gateway import __version__
from gateway.config import DEFAULT_CONFIG, Settings, load_config, redacted
from gateway.counts import register as register_counts
from gateway.errors import ConfigError, GatewayError
from gateway.logging import configure
from gateway.opcua_cli import register as register_opcua
from gateway.orders.cli import register as register_orders
from gateway.replay import register as register_replay
from gateway.report import register as register_report
from gateway.review.cli import register as register_review

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_config(args.config)
    configure(settings.logging.level, settings.logging.format)
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.daemon import run

    asyncio.run(run(_settings(args)))
    return EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    from gateway.daemon import run_recorder

    asyncio.run(run_recorder(_settings(args)))
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    from gateway.config_help import looks_like_simulator

    if looks_like_simulator(args.file):
        from connectors.simulator.config import load_sim_config

        line = load_sim_config(args.file)  # its own errors, if any, as for the gateway's
        print(
            f"{args.file}: a simulated line for `mesgw simulate` ({len(line.machines)} "
            "machines), not a gateway configuration: ok. Its gateway machines: "
            f"mesgw simulate --config {args.file} --print-gateway-config"
        )
        return EXIT_OK
    settings = load_config(args.file)
    machines = len(settings.machines)
    tags = sum(len(m.tags) for m in settings.machines)
    print(f"{args.file}: ok ({machines} machines, {tags} tags)")
    if not machines:
        print(
            f"{args.file}: warning: no [[machines]]: `mesgw run` would read nothing "
            "(fine for `mesgw record` and `mesgw db migrate`)",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    if not args.sources:
        print(json.dumps(redacted(settings), indent=2))
        return EXIT_OK
    from gateway.config_help import sources

    rows = [
        (key, json.dumps(value), origin) for key, value, origin in sources(settings, args.config)
    ]
    width = max(len(k) + len(v) for k, v, _ in rows) + 3
    for key, value, origin in rows:
        print(f"{f'{key} = {value}':<{width}}  # {origin}")
    return EXIT_OK


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from gateway.store.migrate import migrate

    settings = _settings(args)
    if sys.stdout.isatty():
        # A person at a terminal gets the summary below, not a log line per migration too.
        configure("warning", settings.logging.format)
    result = asyncio.run(migrate(settings.store))
    flavor = "TimescaleDB" if result.timescaledb else "plain PostgreSQL"
    if result.applied:
        print(f"applied {len(result.applied)} migrations ({flavor}): {', '.join(result.applied)}")
    else:
        print(f"schema up to date ({flavor})")
    return EXIT_OK


def cmd_outbox_stat(args: argparse.Namespace) -> int:
    from gateway.outbox import read_stats

    path = load_config(args.config).outbox.path
    try:
        stats = read_stats(path)
    except FileNotFoundError as err:
        raise GatewayError(f"{err} (outbox.path in {args.config})") from err
    if args.json:
        print(
            json.dumps(
                {
                    "depth": stats.depth,
                    "capacity": stats.capacity,
                    "oldest_age_s": stats.oldest_age_s,
                    "last_seq": stats.last_seq,
                }
            )
        )
        return EXIT_OK
    age = "-" if stats.oldest_age_s is None else _age(stats.oldest_age_s)
    used = f"{100 * stats.depth / stats.capacity:.1f} %" if stats.capacity else "-"
    rows = [
        ("outbox", str(path)),
        ("waiting events", f"{stats.depth:,}"),
        ("capacity", f"{stats.capacity:,} ({used} used)"),
        ("oldest waiting", age),
        ("last sequence number", f"{stats.last_seq:,}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d} h" if hours else f"{m}:{s:02d} min"


def cmd_outbox_backup(args: argparse.Namespace) -> int:
    from gateway.outbox import backup

    path = load_config(args.config).outbox.path
    try:
        stats = backup(path, args.dest)
    except (FileNotFoundError, FileExistsError) as err:
        raise GatewayError(str(err)) from err
    print(
        f"backed up {path} to {args.dest}: {stats.depth:,} waiting events, "
        f"last sequence number {stats.last_seq:,}"
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesgw", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mesgw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG,
            help=f"configuration file (default {DEFAULT_CONFIG})",
        )
        return p

    def add(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        func: Callable[[argparse.Namespace], int],
        help_: str,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    with_config(add(sub, "run", cmd_run, "run the gateway daemon"))
    with_config(add(sub, "record", cmd_record, "run the recorder: MQTT events into the store"))

    config = sub.add_parser("config", help="check or show the configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = add(config_sub, "check", cmd_config_check, "validate a configuration file")
    check.add_argument("file", type=Path)
    show = with_config(
        add(config_sub, "show", cmd_config_show, "print the effective configuration")
    )
    show.add_argument(
        "--sources",
        action="store_true",
        help="one key per line with where its value came from (env, credential, file, default)",
    )

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    with_config(add(db_sub, "migrate", cmd_db_migrate, "apply schema migrations"))

    outbox = sub.add_parser("outbox", help="inspect the local outbox")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True)
    stat = with_config(
        add(outbox_sub, "stat", cmd_outbox_stat, "outbox depth, capacity, oldest age, last seq")
    )
    stat.add_argument("--json", action="store_true", help="one JSON object")
    saved = with_config(
        add(
            outbox_sub,
            "backup",
            cmd_outbox_backup,
            "a consistent copy of the live outbox (SQLite online backup)",
        )
    )
    saved.add_argument("dest", type=Path, help="the copy to write (must not exist)")
    register_orders(sub)
    register_opcua(sub)
    register_simulate(sub)
    register_modbus(sub)
    register_report(sub)
    register_counts(sub)
    register_replay(sub)
    register_review(sub)
    parser.epilog = "commands:\n" + "\n".join(
        f"  {name:<34} {text}" for name, text in _commands(sub, "mesgw")
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], prefix: str
) -> list[tuple[str, str]]:
    """Every runnable command (the leaves of the parser tree) with its one-line help."""
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    out: list[tuple[str, str]] = []
    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            out += _commands(nested[0], f"{prefix} {name}")
        else:
            out.append((f"{prefix} {name}", helps.get(name, "")))
    return out


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except GatewayError as err:
        print(f"mesgw: {err}", file=sys.stderr)
        return EXIT_ERROR
    except ExceptionGroup as group:
        # A task of the daemon failed for a reason the operator can fix (e.g. the API port
        # is taken): one line each, not a traceback.
        leaves = _leaves(group)
        if not all(isinstance(e, GatewayError) for e in leaves):
            raise
        for leaf in leaves:
            print(f"mesgw: {leaf}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`mesgw replay … | head`): what it wanted was printed. Point
        # stdout at nothing so the interpreter's final flush does not fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
