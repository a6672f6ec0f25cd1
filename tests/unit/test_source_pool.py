"""controller/sources.py: one Prometheus source per key, and idle ones closed, never one in use."""

from __future__ import annotations

from typing import Any

from checkout_gates.controller.sources import IDLE_SECONDS, SourcePool


class FakeSource:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_one_source_per_key_and_an_idle_one_is_closed_on_a_later_lookup() -> None:
    clock = Clock()
    pool = SourcePool(clock)
    made: list[FakeSource] = []

    def make(name: str) -> Any:
        def build() -> FakeSource:
            made.append(FakeSource(name))
            return made[-1]

        return build

    old_token = await pool.get(("prom", "token-1"), make("token-1"))
    assert await pool.get(("prom", "token-1"), make("again")) is old_token and len(made) == 1
    clock.now += IDLE_SECONDS / 2
    fresh = await pool.get(("prom", "token-2"), make("token-2"))  # the token was rotated
    assert not old_token.closed, "not idle long enough"
    clock.now += IDLE_SECONDS / 2 + 1
    assert await pool.get(("prom", "token-2"), make("never")) is fresh
    assert old_token.closed and not fresh.closed and len(pool) == 1


async def test_the_key_asked_for_is_never_closed_however_long_it_idled() -> None:
    clock = Clock()
    pool = SourcePool(clock)
    source = await pool.get("prom", lambda: FakeSource("a"))
    clock.now += IDLE_SECONDS * 10
    assert await pool.get("prom", lambda: FakeSource("b")) is source and not source.closed  # type: ignore[attr-defined]


async def test_closing_the_pool_closes_every_source() -> None:
    pool = SourcePool(Clock())
    sources = [await pool.get(n, lambda n=n: FakeSource(n)) for n in "abc"]  # type: ignore[misc]
    await pool.aclose()
    assert all(s.closed for s in sources) and len(pool) == 0  # type: ignore[attr-defined]
