"""Search benchmark: latency and throughput of search, suggest and recommendations.

Scenarios, each through the gateway for ``--duration`` seconds with ``--concurrency``
workers (bench.catalog's driver, warm-up and percentiles):

- ``search_word``: ``GET /search?q=<one word>``, the first page with facet counts;
- ``search_two_words``: two words (both must match), with facets;
- ``search_filtered``: one word, a category, a price ceiling and in-stock, with facets;
- ``search_typo``: a misspelt word (two letters swapped): finds nothing, is corrected,
  searched again (the ``did_you_mean`` path);
- ``search_next_page``: the second page of a one-word search (keyset, no facets);
- ``suggest``: ``GET /search/suggest`` with the first four letters of a word;
- ``also_bought``: ``GET /products/{id}/also-bought`` (recommendation serving).

Words are sampled from the titles the index holds (through the API), so they are real
and vary in how many books they match. Run it with the platform up and the index built::

    GATEWAY_RATE_LIMITS=default=1000000/1s bin/run --books 1000000
    .venv/bin/bookstore search-rebuild
    .venv/bin/python -m bench.search [--duration 15] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.catalog import (
    HTTP_TIMEOUT_S,
    RESULTS_DIR,
    WARMUP_S,
    ClientFactory,
    ScenarioFailed,
    ScenarioResult,
    check_ready,
    format_table,
    git_commit,
    http_client,
    run_scenario,
)

SCENARIOS = (
    "search_word",
    "search_two_words",
    "search_filtered",
    "search_typo",
    "search_next_page",
    "suggest",
    "also_bought",
)
SAMPLE_PAGES = 10
_WORD = re.compile(r"^[a-z]{4,}$")
STOP_WORDS = {"with", "from", "that", "this", "when", "into", "over", "notes", "short"}


def fail(message: str) -> SystemExit:
    return SystemExit(f"bench.search: {message}")


def sample(base_url: str) -> dict[str, Any]:
    """Words of indexed titles, category ids, book ids and next-page cursors."""
    api = f"{base_url}/api/v1"
    words: set[str] = set()
    product_ids: list[str] = []
    with requests.Session() as session:
        check_ready(session, base_url)
        for sort in ("newest", "price", "-price", "rating"):
            params: dict[str, Any] = {"sort": sort, "limit": 100}
            for _ in range(SAMPLE_PAGES // 4 + 1):
                page = session.get(f"{api}/search", params=params, timeout=HTTP_TIMEOUT_S).json()
                for hit in page["items"]:
                    product_ids.append(hit["id"])
                    words.update(
                        word
                        for word in re.split(r"\W+", hit["title"].lower())
                        if _WORD.match(word) and word not in STOP_WORDS
                    )
                if not page["next_cursor"]:
                    break
                params["cursor"] = page["next_cursor"]
        categories = [
            item["id"]
            for item in session.get(
                f"{api}/categories", params={"limit": 100}, timeout=HTTP_TIMEOUT_S
            ).json()["items"]
        ]
        word_list = sorted(words)
        if not word_list or not product_ids:
            raise fail("the search index is empty: run `bookstore search-rebuild` first")
        cursors = []
        for word in random.sample(word_list, min(50, len(word_list))):
            page = session.get(
                f"{api}/search", params={"q": word, "limit": 20}, timeout=HTTP_TIMEOUT_S
            ).json()
            if page["next_cursor"]:
                cursors.append((word, page["next_cursor"]))
        total = session.get(f"{api}/search", params={"limit": 1}, timeout=HTTP_TIMEOUT_S).json()
    return {
        "words": word_list,
        "categories": categories,
        "product_ids": product_ids,
        "cursors": cursors,
        "catalog_size": total["total"],
    }


def typo(word: str) -> str:
    index = random.randrange(1, len(word) - 2)
    return word[:index] + word[index + 1] + word[index] + word[index + 2 :]


def build_scenarios(base_url: str, data: dict[str, Any]) -> dict[str, ClientFactory]:
    api = f"{base_url}/api/v1"
    words, categories = data["words"], data["categories"]

    def url(path: str, **params: Any) -> str:
        return requests.Request("GET", f"{api}{path}", params=params).prepare().url

    def scenario(url_for: Callable[[], str]) -> ClientFactory:
        return lambda: http_client(url_for)

    factories = {
        "search_word": scenario(lambda: url("/search", q=random.choice(words))),
        "search_two_words": scenario(lambda: url("/search", q=" ".join(random.sample(words, 2)))),
        "search_filtered": scenario(
            lambda: url(
                "/search",
                q=random.choice(words),
                category=random.choice(categories),
                price_max=2000,
                in_stock="true",
            )
        ),
        "search_typo": scenario(lambda: url("/search", q=typo(random.choice(words)))),
        "suggest": scenario(lambda: url("/search/suggest", q=random.choice(words)[:4])),
        "also_bought": scenario(
            lambda: url(f"/products/{random.choice(data['product_ids'])}/also-bought")
        ),
    }
    if data["cursors"]:

        def next_page() -> str:
            word, cursor = random.choice(data["cursors"])
            return url("/search", q=word, cursor=cursor, limit=20)

        factories["search_next_page"] = scenario(next_page)
    return factories


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.search",
        description="Latency and throughput of search, suggest and recommendations.",
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8080", help="the gateway")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="worker threads")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of: %(default)s"
    )
    parser.add_argument("--output", type=Path, help="the JSON file to write")
    parser.add_argument("--seed", type=int, default=1, help="for the random choices")
    args = parser.parse_args(argv)
    args.base_url = args.base_url.rstrip("/")
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown or not args.scenarios:
        parser.error(f"--scenarios: choose from {', '.join(SCENARIOS)} (got {unknown or 'none'})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    random.seed(args.seed)
    started_at = datetime.now(UTC)
    data = sample(args.base_url)
    print(
        f"Index of {data['catalog_size']} books; sampled {len(data['words'])} title words, "
        f"{len(data['product_ids'])} books; {args.duration:g}s per scenario, "
        f"{args.concurrency} workers, {WARMUP_S:g}s warm-up. Load: {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    factories = build_scenarios(args.base_url, data)
    results: dict[str, ScenarioResult] = {}
    for name in args.scenarios:
        if name not in factories:
            print(f"  {name}: skipped (no search had a second page)")
            continue
        print(f"  {name}...", flush=True)
        try:
            results[name] = run_scenario(factories[name], args.duration, args.concurrency)
        except ScenarioFailed as error:
            raise fail(f"{name}: {error}") from None
    print()
    print(format_table(results))
    document = {
        "benchmark": "search",
        "started_at": started_at.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()[0],
        },
        "settings": {
            "base_url": args.base_url,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "warmup_s": WARMUP_S,
            "index_size": data["catalog_size"],
            "words_sampled": len(data["words"]),
        },
        "results": {name: vars(result) for name, result in results.items()},
    }
    path = args.output or RESULTS_DIR / f"search-{started_at:%Y%m%dT%H%MZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nWritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
