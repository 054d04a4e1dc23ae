"""The device farm of the Modbus bench: one pymodbus TCP server (and port) per device.

Run as `python -m bench.modbus_farm DEVICES REGISTERS` (its own process, so that its cost is
nobody's figure). It prints `{"ports": [...]}` once serving; then each `count` line on stdin
is answered with the requests received since the previous one (in all, and of the device
that received the fewest, which shows a client skipping cycles). Every second each device
makes a good part, every 20 s a reject, and a few of its analog values move.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from bench.modbus_workload import CHANGING_VALUES, EXECUTE, REJECT_EVERY_S, layout


async def farm(devices: int, registers: int) -> None:
    from connectors.modbus.codec import encode
    from connectors.modbus.testing import ModbusSimulator, Unit

    tags = layout(registers)
    values = [t for t in tags if t.role == "value"]
    rng = random.Random(7)
    sims = []
    counters = [[rng.randrange(2**31), rng.randrange(2**31)] for _ in range(devices)]
    for counts in counters:
        sim = ModbusSimulator({1: Unit(registers=registers, bits=16)})
        await sim.start()
        image: list[int] = []
        for tag in tags:
            if tag.role.endswith("_count"):
                image += encode(counts[tag.role == "reject_count"], "uint32", tag.order)
            elif tag.role == "state":
                image += encode(EXECUTE, "int16")
            elif tag.type == "float32":
                image += encode(rng.uniform(-1000, 1000), "float32", tag.order)
            else:
                image += encode(rng.randrange(-1000, 1000), "int16")
        await sim.set_registers("hr", 0, image)
        sims.append(sim)
    print(json.dumps({"ports": [s.port for s in sims]}), flush=True)

    async def produce() -> None:
        loop = asyncio.get_running_loop()
        second = 0
        next_at = loop.time() + 1
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += 1
            second += 1
            for sim, counts in zip(sims, counters, strict=True):
                counts[0] += 1
                regs = encode(counts[0] % 2**32, "uint32")
                if second % REJECT_EVERY_S == 0:
                    counts[1] += 1
                    regs += encode(counts[1] % 2**32, "uint32")
                await sim.set_registers("hr", 0, regs)
                for tag in rng.sample(values, max(1, round(len(values) * CHANGING_VALUES))):
                    if tag.type == "float32":
                        new = encode(rng.uniform(-1000, 1000), "float32", tag.order)
                    else:
                        new = encode(rng.randrange(-1000, 1000), "int16")
                    await sim.set_registers("hr", tag.register, new)

    task = asyncio.create_task(produce(), name="produce")
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "count":
            per_device = []
            for sim in sims:
                per_device.append(len(sim.received))
                sim.received.clear()
            print(json.dumps({"requests": sum(per_device), "fewest": min(per_device)}), flush=True)
    task.cancel()
    for sim in sims:
        await sim.stop()


def main(argv: list[str]) -> int:
    from gateway.logging import configure

    configure("error", stream="stderr")  # stdout carries the answers to the bench
    asyncio.run(farm(int(argv[0]), int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
