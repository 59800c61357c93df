"""Benchmark: the worker's rate in two source trees, run by turns on one machine.

``python bench/paired.py OLD_TREE NEW_TREE --pairs 4 --users 20000`` runs the worker of each
tree (its ``src`` and its ``bench/worker_throughput.py``) over the same records: the 2026 mix
of this tree's ``bench/traffic.py``, ``2 * users`` bodies over ``users`` users, on a local
Kafka and Redis started for each run, by turns, ``--pairs`` times, and prints each run and the
ratios new / old per pair (events/s, and the worker's CPU per event). A tree is a checkout,
e.g. ``git worktree add /tmp/old <commit>``. On two shared cores one run says little: compare
the pairs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

# what one run does, in a fresh interpreter whose path starts with the tree's own code
ONE_RUN = """
import asyncio, importlib, json, sys, time, uuid
import importlib.util
tree, users, here = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path[:0] = [tree + "/src", tree, tree + "/bench"]
wt = importlib.import_module("bench.worker_throughput")
# the traffic of this tree's bench/traffic.py, whatever tree's worker runs it
spec = importlib.util.spec_from_file_location("traffic_here", here + "/traffic.py")
traffic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(traffic)
from wawindow.config import cache_dir
from wawindow.devservices.stack import LocalServices
from wawindow.redis.connection import connect
from wawindow.keys import Topics
try:
    from wawindow.kafka.topics import create_topics
except ImportError:  # trees before the packages by layer
    from wawindow.topics import create_topics

async def run(services):
    topics = Topics(f"paired.{uuid.uuid4().hex[:8]}.")
    await create_topics(services.kafka_bootstrap, topics, partitions=6, replication_factor=1)
    events = traffic.mix_2026(2 * users, users, int(time.time()))
    await wt.produce(services.kafka_bootstrap, topics.webhook_events, events)
    redis = await connect(services.redis_url)
    await redis.flushdb()
    await redis.aclose()
    return await wt.worker_rate(services.kafka_bootstrap, topics, services.redis_url, len(events))

with LocalServices.create(cache_dir(), kafka_heap_mb=1024) as services:
    result = asyncio.run(run(services))
print(json.dumps({k: result[k] for k in ("events", "events_per_s", "worker_cpu_us_per_event")}))
"""


def one_run(tree: Path, users: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", ONE_RUN, str(tree), str(users), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--out", type=Path, help="where to write the results (JSON)")
    args = parser.parse_args()
    pairs = []
    for i in range(args.pairs):
        order = (("old", args.old), ("new", args.new))
        if i % 2:  # each tree goes first as often as the other
            order = order[::-1]
        runs = {name: one_run(tree, args.users) for name, tree in order}
        old, new = runs["old"], runs["new"]
        pairs.append(
            {
                **runs,
                "ratio": round(new["events_per_s"] / old["events_per_s"], 3),
                "cpu_ratio": round(
                    new["worker_cpu_us_per_event"] / old["worker_cpu_us_per_event"], 3
                ),
            }
        )
        print(json.dumps(pairs[-1]), flush=True)
    summary = {
        "users": args.users,
        "pairs": pairs,
        "median_ratio": statistics.median(p["ratio"] for p in pairs),
        "median_cpu_ratio": statistics.median(p["cpu_ratio"] for p in pairs),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
