"""What every connector yields (`common.sample`: samples and link changes, which the rules
take too), and the small async contract each connector fulfils."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from common.sample import Link as Link
from common.sample import Quality as Quality
from common.sample import Reading as Reading
from common.sample import Sample as Sample
from common.sample import Value as Value

Emit = Callable[[Sequence[Reading]], Awaitable[object]]


class Connector(Protocol):
    """One device's connection: runs until cancelled, reconnecting on its own."""

    async def run(self, emit: Emit) -> None: ...
