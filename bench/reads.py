"""Read benchmark: the gateway's public reads under wrk, cached and uncached.

For each scenario and connection count (default 8, 32 and 256) it runs ``wrk`` for
``--duration`` seconds (after ``--warmup`` seconds not recorded) against a running
gateway, once served from the read cache and once with ``Cache-Control: no-cache`` (the
cache's bypass switch: the service answers),
and records throughput, p50/p95/p99/max latency, errors (non-2xx/3xx and socket
errors), and the CPU seconds each process used per 1,000 requests, read from
``/proc/<pid>/stat`` before and after (the gateway's workers, found from its port; and
any process named with ``--process name=pid``, e.g. the catalog service or RabbitMQ).

With ``--peer-url`` (the reference shop, /work/shared/reference-shop) it measures the
peer's one-product URL at the same connection counts in the same run, so the results
carry ratios that do not depend on how busy the machine is.

Scenarios: ``product`` (``GET /products/{id}`` over up to 200 sampled ids),
``not_modified`` (the same with a matching ``If-None-Match``), ``list``
(``GET /products?limit=20``), ``search`` (``GET /search?q=<word>&limit=20``) and
``health``.

    GATEWAY_RATE_LIMITS=default=1000000/1s bin/run
    .venv/bin/python -m bench.reads [--base-url http://127.0.0.1:8080] \\
        [--connections 8,32,256] [--duration 10] [--peer-url URL] [--process catalog=PID]

Needs ``wrk`` (``apt-get install -y wrk``). Writes ``bench/results/reads-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SCENARIOS = ("product", "not_modified", "list", "search", "health")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# wrk's Lua hooks: each connection walks the list of paths from a random start; the
# summary is printed as one JSON line after the run.
WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local counter = math.random(#paths)
local extra = os.getenv("BENCH_HEADER")
local etag = os.getenv("BENCH_ETAGS") == "1"
request = function()
  counter = counter % #paths + 1
  local path, tag = paths[counter]:match("([^ ]+) ?(.*)")
  local headers = {}
  if extra and extra ~= "" then
    local name, value = extra:match("([^:]+): (.*)")
    headers[name] = value
  end
  if etag and tag ~= "" then headers["If-None-Match"] = tag end
  return wrk.format("GET", path, headers)
end
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "p50": %f, "p95": %f, "p99": %f, "max": %f, ' ..
    '"status_errors": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(95) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def gateway_processes(port: int) -> dict[str, int]:
    """The processes listening on ``port`` (uvicorn's workers share the socket) and the
    process that started them."""
    output = subprocess.run(  # noqa: S603 - fixed commands
        ["ss", "-Hltnp", f"sport = :{port}"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    pids = sorted(
        {
            int(part.split("=")[1])
            for part in output.replace(",", " ").split()
            if part.startswith("pid=")
        }
    )
    named = {}
    for pid in pids:
        named[f"gateway-{pid}"] = pid
        for child in children(pid):
            named.setdefault(f"gateway-{child}", child)
    return named


def sample_paths(base_url: str, count: int) -> tuple[list[str], list[str]]:
    """Product paths (each with its ETag) and search words from the catalog."""
    api = f"{base_url}/api/v1"
    page = requests.get(f"{api}/products", params={"limit": 100}, timeout=10).json()
    products = page["items"]
    while page["next_cursor"] and len(products) < count:
        page = requests.get(
            f"{api}/products", params={"limit": 100, "cursor": page["next_cursor"]}, timeout=10
        ).json()
        products += page["items"]
    products = products[:count]
    paths = [f'/api/v1/products/{item["id"]} "{item["version"]}"' for item in products]
    words = sorted(
        {
            word.lower()
            for item in products
            for word in item["title"].split()
            if len(word) > 4 and word.isalpha()
        }
    )
    return paths, words[:50] or ["book"]


def run_wrk(
    url: str,
    paths: list[str],
    connections: int,
    duration: float,
    header: str = "",
    etags: bool = False,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "bench.lua"
        script.write_text(WRK_SCRIPT)
        path_file = Path(scratch) / "paths"
        path_file.write_text("\n".join(paths) + "\n")
        env = {
            **os.environ,
            "BENCH_PATHS": str(path_file),
            "BENCH_HEADER": header,
            "BENCH_ETAGS": "1" if etags else "0",
        }
        threads = min(2, connections)
        completed = subprocess.run(  # noqa: S603 - fixed commands
            [  # noqa: S607 - wrk from PATH
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration:g}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    line = next(line for line in completed.stdout.splitlines() if line.startswith("{"))
    result = json.loads(line)
    result["rps"] = result["requests"] / result["seconds"]
    return result


def measure(
    url: str,
    paths: list[str],
    connections: int,
    duration: float,
    processes: dict[str, int],
    warmup: float = 0,
    **wrk_options: Any,
) -> dict[str, Any]:
    if warmup > 0:
        # Not recorded: fills every worker's cache (and warms connections) first.
        run_wrk(url, paths, connections, warmup, **wrk_options)
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    result = run_wrk(url, paths, connections, duration, **wrk_options)
    after = {name: cpu_seconds(pid) for name, pid in processes.items()}
    thousands = max(result["requests"], 1) / 1000
    result["cpu_seconds_per_1000_requests"] = {
        name: round((after[name] - before[name]) / thousands, 4)
        for name in processes
        if before[name] is not None and after[name] is not None
    }
    return result


def scenario_paths(scenario: str, products: list[str], words: list[str]) -> list[str]:
    if scenario in ("product", "not_modified"):
        return products
    if scenario == "list":
        return ["/api/v1/products?limit=20"]
    if scenario == "search":
        return [f"/api/v1/search?q={word}&limit=20" for word in words]
    return ["/health"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--connections", default="8,32,256")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--products", type=int, default=100, help="distinct ids to read")
    parser.add_argument("--warmup", type=float, default=3.0, help="unrecorded seconds first")
    parser.add_argument("--peer-url", help="the reference shop's one-product URL")
    parser.add_argument(
        "--process",
        action="append",
        default=[],
        metavar="NAME=PID",
        help="another process whose CPU to record (repeatable)",
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    port = int(args.base_url.rsplit(":", 1)[1].split("/")[0])
    processes = gateway_processes(port)
    for item in args.process:
        name, _, pid = item.partition("=")
        processes[name] = int(pid)
    # wrk at 256 connections needs the descriptors; so does the gateway (raise its own).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    random.seed(1)
    products, words = sample_paths(args.base_url, args.products)
    connection_counts = [int(count) for count in args.connections.split(",")]
    results: list[dict[str, Any]] = []
    print(
        f"{'scenario':<14}{'cache':<9}{'conns':>6}{'req/s':>10}{'p50':>9}{'p95':>9}"
        f"{'p99':>9}{'errors':>8}  CPU s/1000 req"
    )
    for connections in connection_counts:
        runs: list[tuple[str, str, str, dict[str, Any]]] = []
        if args.peer_url:
            runs.append(("peer_product", "peer", args.peer_url, {}))
        for scenario in args.scenarios.split(","):
            url = args.base_url
            etags = scenario == "not_modified"
            runs.append((scenario, "cached", url, {"etags": etags}))
            if scenario != "health":
                runs.append(
                    (
                        scenario,
                        "bypassed",
                        url,
                        {"etags": etags, "header": "Cache-Control: no-cache"},
                    )
                )
        for scenario, cache, url, options in runs:
            if scenario == "peer_product":
                result = measure(
                    url, ["/products/the_odyssey"], connections, args.duration, {}, args.warmup
                )
            else:
                paths = scenario_paths(scenario, products, words)
                result = measure(
                    url, paths, connections, args.duration, processes, args.warmup, **options
                )
            errors = result["status_errors"] + result["socket_errors"]
            cpu = ", ".join(
                f"{name} {value:.3f}"
                for name, value in result["cpu_seconds_per_1000_requests"].items()
            )
            print(
                f"{scenario:<14}{cache:<9}{connections:>6}{result['rps']:>10.0f}"
                f"{result['p50']:>9.1f}{result['p95']:>9.1f}{result['p99']:>9.1f}"
                f"{errors:>8}  {cpu}",
                flush=True,
            )
            results.append(
                {"scenario": scenario, "cache": cache, "connections": connections, **result}
            )
    peer = {r["connections"]: r["rps"] for r in results if r["scenario"] == "peer_product"}
    for result in results:
        if peer.get(result["connections"]) and result["scenario"] == "product":
            result["ratio_to_peer"] = round(result["rps"] / peer[result["connections"]], 2)
            print(
                f"product {result['cache']} c{result['connections']}: "
                f"{result['ratio_to_peer']}x the reference shop"
            )
    started = datetime.now(UTC)
    commit = subprocess.run(  # noqa: S603 - fixed commands
        ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    output = args.output or RESULTS_DIR / f"reads-{started:%Y%m%dT%H%MZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "benchmark": "reads",
                "started_at": started.isoformat(),
                "git_commit": commit,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average": os.getloadavg(),
                },
                "settings": {**vars(args), "output": str(output), "processes": processes},
                "results": results,
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
