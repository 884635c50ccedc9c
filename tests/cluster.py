"""The sandbox network of the product, with what the end-to-end tests add to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from adapter.ops.sandbox import Sandbox, SandboxSchool
from tests.services import RUN

School = SandboxSchool

SCHOOLS = [("vhs-sr", "VHS SR"), ("vhs-ka", "vhs Karlsruhe"), ("vhs-hof", "vhs Hofer Land")]


class Cluster(Sandbox):
    """A sandbox named for tests, whose waits fail the test when sync does not happen."""

    def __init__(
        self,
        rabbitmq_url: str,
        database_url: Callable[[str], str],
        *,
        full_scan_interval: float = 60.0,
        network: str | None = None,
        school_urls: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            rabbitmq_url,
            database_url,
            prefix=f"vhs-sync-test-{RUN}",
            full_scan_interval=full_scan_interval,
            network=network,
            school_urls=school_urls,
        )
        self.rabbitmq_url = rabbitmq_url

    def three_schools(self) -> tuple[School, School, School]:
        """A master (VHS SR) and two subscribers (vhs Karlsruhe, vhs Hofer Land)."""
        made = [
            self.add_school(i, n, master="vhs-sr", peers=[p for p in SCHOOLS if p[0] != i])
            for i, n in SCHOOLS
        ]
        return made[0], made[1], made[2]

    async def wait_until(
        self, condition: Callable[[], bool], *, within: float = 20.0, what: str = "sync"
    ) -> float:
        try:
            return await super().wait_until(condition, within=within, what=what)
        except TimeoutError as error:
            raise AssertionError(str(error)) from None

    async def quiet(self, seconds: float = 1.0) -> None:
        """Give the adapters time to do anything they would (wrongly) do."""
        await asyncio.sleep(seconds)
