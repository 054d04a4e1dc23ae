"""`mesgw simulate`: run the simulated line, or print the gateway config that reads it."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.simulator.config import SimConfig
    from connectors.simulator.line import SimulatedLine
    from connectors.simulator.scenario import Scenario

HELP = "run the simulated production line (OPC UA and Modbus TCP servers)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `simulate` to the `mesgw` command line."""
    p = sub.add_parser("simulate", help=HELP, description=HELP)
    p.add_argument("--config", type=Path, required=True, help="simulated line (TOML)")
    p.add_argument("--scenario", type=Path, help="steps to run (TOML); default: run free")
    p.add_argument(
        "--print-gateway-config",
        action="store_true",
        help="print the gateway's [[machines]] for this line and exit",
    )
    p.add_argument(
        "--truth",
        type=Path,
        help="write what happened (JSON) when the scenario is done and at exit",
    )
    p.add_argument(
        "--hold",
        action="store_true",
        help="serve the line but make nothing until SIGUSR1 (so a gateway can take its "
        "baselines first); SIGUSR2 stops production and writes the truth file",
    )
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    # Imported here: asyncua and pymodbus are slow to import for every other command.
    from common.errors import ConfigError, GatewayError
    from common.logging import configure
    from connectors.simulator.config import load_sim_config
    from connectors.simulator.gateway_config import gateway_machines, render_toml
    from connectors.simulator.scenario import load_scenario

    config = load_sim_config(args.config)
    if args.truth is not None and not args.truth.parent.is_dir():
        raise ConfigError([f"--truth {args.truth}: no such directory {args.truth.parent}"])
    scenario = load_scenario(args.scenario, config) if args.scenario else None
    if args.print_gateway_config:
        try:
            machines = gateway_machines(config)
        except ValueError as err:
            raise ConfigError([f"{args.config}: {err}"]) from err
        print(f"# gateway machines reading the simulated line of {args.config}\n")
        print(render_toml(machines), end="")
        return 0
    configure("info")
    try:
        asyncio.run(simulate(config, scenario, args.truth, hold=args.hold))
    except OSError as err:
        raise GatewayError(f"cannot serve the simulated line: {err}") from err
    return 0


async def _work(line: SimulatedLine, scenario: Scenario | None, truth: Path | None) -> None:
    from common.logging import get_logger

    if scenario is None:
        line.free_run()
        return
    await line.run_scenario(scenario)
    if truth is not None:
        line.truth.write(truth)
    get_logger("connectors.simulator").info("scenario done", truth=str(truth) if truth else None)


async def simulate(
    config: SimConfig, scenario: Scenario | None, truth: Path | None, *, hold: bool = False
) -> None:
    """Serve the line until SIGTERM or SIGINT; write the truth file on the way out.

    With `hold`, production starts at SIGUSR1. SIGUSR2 stops production (the servers keep
    answering with the final values) and writes the truth file: what a gateway reads from
    then on is exactly what the truth says was made.
    """
    from connectors.simulator.line import SimulatedLine

    stop = asyncio.Event()
    go = asyncio.Event()
    halt = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    loop.add_signal_handler(signal.SIGUSR2, halt.set)
    if not hold:
        go.set()
    line = SimulatedLine(config)
    try:
        async with line, asyncio.TaskGroup() as group:

            async def produce() -> None:
                await go.wait()
                await _work(line, scenario, truth)

            work = group.create_task(produce(), name="sim-work")
            halted = group.create_task(halt.wait(), name="sim-halt")
            stopped = group.create_task(stop.wait(), name="sim-stop")
            await asyncio.wait((halted, stopped), return_when=asyncio.FIRST_COMPLETED)
            if halt.is_set() and not stop.is_set():
                work.cancel()
                await line.halt()
                if truth is not None:
                    line.truth.write(truth)
                await stop.wait()
            work.cancel()
            halted.cancel()
            stopped.cancel()
    finally:
        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            loop.remove_signal_handler(sig)
        if truth is not None:
            line.truth.write(truth)
