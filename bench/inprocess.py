"""Time per agent test: the official SDK answered in process versus over a loopback socket.

    python bench/inprocess.py              40 tests per way (about 10 s here)
    python bench/inprocess.py --tests 10   a smoke run (CI)

One "test" is what a pytest test of an agent costs with the ``vault.testing`` fixtures:
a new vault file (fast KDF) in a temp directory, the SDK client, then the agent's work
(seed one secret, ``fetch`` it by alias, ``list`` one page, ``update`` it, ``mint`` an oauth
token, one 404), then teardown, all inside ``asyncio.run`` as an async test plugin runs it.

* **in process**: ``cbk_client``'s wiring, ``ChatBotKit(..., transport=vault.testing.transport(v))``:
  no socket, no thread, no port.
* **socket**: ``cbk_server``'s wiring, ``vault.testing.serve(v)`` (uvicorn on a thread, a free
  port on 127.0.0.1) and ``ChatBotKit(base_url=server.base_url, ...)``.

The two ways run round-robin (one test of each per round), so load from the machine's
other users hits both alike. Medians and p90 of wall time per test, and of the five SDK
calls alone. Figures are printed, never asserted (bench/README.md: on a shared machine a
timing assertion measures the neighbours). Needs the ``chatbotkit`` SDK and the test extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import chatbotkit

from vault.testing import CLOUD_BASE_URL, new_vault, seed, serve, transport

TOKEN = "sk-bench-token"


async def agent_work(client: Any, v: Any) -> float:
    """The agent's calls; returns the seconds they took (setup excluded)."""
    seed(v, alias="weather", type="bearer", value="tok", meta={"env": "prod"})
    seed(v, alias="calendar", type="oauth", value=json.dumps({"accessToken": "at"}))
    start = time.perf_counter()
    item = await client.secret.fetch("@weather")
    page = await client.secret.list({"take": 10, "meta": {"env": "prod"}})
    await client.secret.update(item.id, {"alias": "weather", "description": "rotated"})
    minted = await client.secret.mint("@calendar")
    with suppress(chatbotkit.APIError):
        await client.secret.fetch("@missing")
    elapsed = time.perf_counter() - start
    assert page.items[0].id == item.id and minted.token == "at"
    return elapsed


@contextmanager
def in_process(v: Any) -> Iterator[Any]:
    yield chatbotkit.ChatBotKit(base_url=CLOUD_BASE_URL, token=TOKEN, transport=transport(v, token=TOKEN))


@contextmanager
def over_socket(v: Any) -> Iterator[Any]:
    with serve(v, token=TOKEN) as server:
        yield chatbotkit.ChatBotKit(base_url=server.base_url, token=TOKEN)


def one_test(directory: Path, wiring: Callable[[Any], Any]) -> tuple[float, float]:
    """One whole test, setup to teardown: (seconds in total, seconds of the SDK calls)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=directory) as own, new_vault(Path(own) / "t.cbkv") as v, wiring(v) as client:

        async def body() -> float:
            async with client:
                return await agent_work(client, v)

        calls = asyncio.run(body())
    return time.perf_counter() - start, calls


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=40, help="tests per way (default 40)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    ways: dict[str, Callable[[Any], Any]] = {"in process": in_process, "socket": over_socket}
    totals: dict[str, list[float]] = {name: [] for name in ways}
    calls: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory(prefix="cbk-bench-") as tmp:
        for wiring in ways.values():  # warm-up: imports, first-use caches
            one_test(Path(tmp), wiring)
        for _ in range(args.tests):
            for name, wiring in ways.items():
                total, sdk_calls = one_test(Path(tmp), wiring)
                totals[name].append(total)
                calls[name].append(sdk_calls)
    figures = {name: {"test": summary(totals[name]), "sdk_calls": summary(calls[name])} for name in ways}
    ratio = figures["socket"]["test"]["median_ms"] / figures["in process"]["test"]["median_ms"]
    if args.json:
        print(json.dumps({"tests_per_way": args.tests, "figures": figures, "socket_over_in_process": ratio}))
        return
    print(f"time per agent test, {args.tests} tests per way, run round-robin (median / p90)")
    for name, fig in figures.items():
        print(
            f"  {name:<11} whole test {fig['test']['median_ms']:7.1f} / {fig['test']['p90_ms']:7.1f} ms"
            f"    the 5 SDK calls {fig['sdk_calls']['median_ms']:6.1f} / {fig['sdk_calls']['p90_ms']:6.1f} ms"
        )
    print(f"  a test over a socket takes {ratio:.1f}x the in-process time")


if __name__ == "__main__":
    main()
