"""Benchmark: POST /webhook of the real receiver against a bare aiohttp handler.

Both run as one server process on this machine, driven by the same load in the same run:

1. peak rate: ``wrk`` (closed loop, 64 connections) for a fixed time against each server;
2. latency at half the receiver's peak: an open-loop generator sends at a constant rate and
   times every request from the moment it was *due*, so a stall is never hidden.

The receiver verifies the signature, splits the body and waits for Kafka's ``acks=all`` on a
real local broker (which shares the machine's cores). Bodies are a realistic mix: Meta
sends about three status webhooks per outbound message plus the inbound ones, mostly one
update per POST, sometimes batched.

On a machine with two or more cores each server is pinned to core 0, and the load generators
and the Kafka broker to core 1, so both servers get the same single core and nothing else on it.

Usage: python bench/webhook_throughput.py [--seconds 20] [--connections 64] [--no-pin]
Writes bench/results/webhook_throughput.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from wawindow.config import cache_dir
from wawindow.dev import samples
from wawindow.devservices.process import free_port
from wawindow.devservices.stack import LocalServices
from wawindow.ingest.signature import HEADER, sign
from wawindow.kafka.topics import create_topics
from wawindow.keys import Topics

HERE = Path(__file__).resolve().parent
SECRET = "bench-app-secret"
RESULTS = HERE / "results" / "webhook_throughput.json"


def realistic_bodies(count: int, seed: int = 7) -> list[bytes]:
    """70 % one status, 20 % one inbound text, 8 % five statuses, 2 % fifty statuses."""
    rng = random.Random(seed)
    bodies = []
    ts = 1_780_000_000
    for i in range(count):
        roll = rng.random()
        user = f"1650555{rng.randrange(10_000):04d}"
        if roll < 0.70:
            state = rng.choice(["sent", "delivered", "read"])
            pricing = (
                samples.pmp_pricing(rng.choice(["marketing", "utility", "service"]))
                if state != "read"
                else None
            )
            change = samples.messages_change(
                contacts=[samples.contact(user, f"US.{rng.randrange(10**18)}")],
                statuses=[
                    samples.status(f"wamid.b{i}", state, ts + i, wa_id=user, pricing=pricing)
                ],
            )
            bodies.append(samples.encode(samples.body(change)))
        elif roll < 0.90:
            change = samples.messages_change(
                contacts=[samples.contact(user)],
                messages=[
                    samples.text_message(
                        f"wamid.in{i}", ts + i, "Hi, is my order on its way? 🚚", wa_id=user
                    )
                ],
            )
            bodies.append(samples.encode(samples.body(change)))
        else:
            size = 5 if roll < 0.98 else 50
            bodies.append(samples.encode(samples.status_batch(i * 100, size, ts + i, users=size)))
    return bodies


def events_in(body: bytes) -> int:
    value = json.loads(body)["entry"][0]["changes"][0]["value"]
    return len(value.get("statuses", [])) + len(value.get("messages", []))


def wrk_script(bodies: list[bytes], path: Path) -> None:
    lines = ["local bodies = {}", "local sigs = {}"]
    for i, raw in enumerate(bodies, start=1):
        text = raw.decode()
        assert "]==]" not in text
        lines.append(f"bodies[{i}] = [==[{text}]==]")
        lines.append(f'sigs[{i}] = "{sign(raw, SECRET)}"')
    lines += [
        "local n = 0",
        "request = function()",
        f"  n = (n % {len(bodies)}) + 1",
        f'  local headers = {{["Content-Type"] = "application/json", ["{HEADER}"] = sigs[n]}}',
        '  return wrk.format("POST", "/webhook", headers, bodies[n])',
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    pct = {
        m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M)
    }
    return {
        "rps": rate,
        "p50_ms": pct.get("50"),
        "p99_ms": pct.get("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else None,
    }


def measured(pid: int, url: str, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    """:func:`run_wrk`, plus how much of a core the server ``pid`` used meanwhile
    (``server_cpu``: near 1.0 when it is the bottleneck, less when it waits on Kafka)."""
    before, started = _cpu_seconds(pid), time.monotonic()
    result = run_wrk(url, script, seconds, connections)
    result["server_cpu"] = round((_cpu_seconds(pid) - before) / (time.monotonic() - started), 2)
    result["server_cpu_us_per_request"] = round(result["server_cpu"] / result["rps"] * 1e6, 1)
    return result


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def open_loop(port: int, bodies: list[bytes], rate: float, seconds: float) -> dict[str, Any]:
    """:func:`open_loop_raw` with signed ``POST /webhook`` requests of ``bodies``."""
    requests = [
        (
            f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"{HEADER}: {sign(raw, SECRET)}\r\nContent-Length: {len(raw)}\r\n\r\n"
        ).encode()
        + raw
        for raw in bodies
    ]
    return await open_loop_raw(port, requests, rate, seconds)


async def open_loop_raw(
    port: int, requests: list[bytes], rate: float, seconds: float
) -> dict[str, Any]:
    """Send ``requests`` (raw HTTP/1.1, in turn) at a constant ``rate`` over 64 keep-alive
    connections; each request's latency counts from the moment it was *due*, so waiting for
    a free connection or a late dispatcher is measured too (no coordinated omission). Raw
    HTTP/1.1 on asyncio streams keeps the generator's own cost far below the server's."""
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    worst: dict[int, float] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            index, due = item
            writer.write(requests[index])
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12].decode()
            at = head.lower().find(b"content-length:")
            length = int(head[at + 15 : head.index(b"\r\n", at)]) if at >= 0 else 0
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - due) * 1000)
            second = int(due - start)
            worst[second] = max(worst.get(second, 0.0), latencies[-1])
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(64)]
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i % len(requests), due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    latencies.sort()
    return {
        "rate": round(rate),
        "requests": total,
        "statuses": statuses,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "max_ms": round(latencies[-1], 2),
        "over_50_ms": sum(1 for x in latencies if x > 50),
        "worst_ms_by_second": [round(worst.get(i, 0.0), 1) for i in range(int(seconds) + 1)],
    }


# the bare handler doing more and more of the receiver's work (bench/bare_server.py --steps)
BUDGET_STEPS = (
    "verify",
    "verify,split",
    "verify,split,body-record",
    "verify,split,event-records",
)


def serve_and_measure(
    steps: list[str], url: str, script: Path, seconds: int, connections: int, preexec: Any
) -> dict[str, Any]:
    """Start bench/bare_server.py with ``steps`` on a free port, warm it up (longer when it
    produces to Kafka: the broker's JIT), and measure it with wrk (``url`` has a ``{port}``
    placeholder)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "bare_server.py"), str(port), *steps], preexec_fn=preexec
    )
    try:
        url = url.format(port=port)
        wait_listening(port, server)
        run_wrk(url, script, 15 if "record" in " ".join(steps) else 3, connections)  # warm-up
        return measured(server.pid, url, script, seconds, connections)
    finally:
        server.terminate()
        server.wait(10)


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server on port {port} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout_s} s")


def _server_core() -> None:  # runs in the server's child process, before exec
    os.sched_setaffinity(0, {0})


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback URL built here
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} never became ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--compression", default="none", choices=["none", "gzip", "lz4", "zstd"],
        help="the receiver's WAWINDOW_KAFKA_COMPRESSION",
    )  # fmt: skip
    parser.add_argument(
        "--no-budget", action="store_true",
        help="skip the bare handler doing part of the receiver's work, step by step",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {1})  # this process, wrk and the broker (started below) inherit it
    server_core = _server_core if pin else None
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")

    bodies = realistic_bodies(2000)
    mean_events = statistics.mean(events_in(b) for b in bodies)
    mean_bytes = statistics.mean(len(b) for b in bodies)
    work = Path(tempfile.mkdtemp(prefix="wawindow-bench-"))
    script = work / "bodies.lua"
    wrk_script(bodies, script)
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "bodies": {
            "count": len(bodies),
            "mean_events": round(mean_events, 2),
            "mean_bytes": round(mean_bytes),
        },
        "seconds": args.seconds,
        "connections": args.connections,
        "pinned": pin,
        "compression": args.compression,
    }

    with LocalServices.create(cache_dir()) as services:
        prefix = f"bench.{uuid.uuid4().hex[:8]}."
        asyncio.run(
            create_topics(
                services.kafka_bootstrap, Topics(prefix), partitions=6, replication_factor=1
            )
        )

        bare_url = "http://127.0.0.1:{port}/webhook"
        results["bare"] = serve_and_measure(
            [], bare_url, script, args.seconds, args.connections, server_core
        )
        if not args.no_budget:
            # what each part of the receiver's work costs, on the same load in the same run
            budget = Topics(f"{prefix}budget.")
            asyncio.run(
                create_topics(services.kafka_bootstrap, budget, partitions=6, replication_factor=1)
            )
            kafka = ["--bootstrap", services.kafka_bootstrap, "--topic", budget.webhook_events]
            runs = {
                steps: serve_and_measure(
                    ["--steps", steps, *kafka], bare_url, script, args.seconds, args.connections,
                    server_core,
                )
                for steps in BUDGET_STEPS
            }  # fmt: skip
            results["budget"] = {steps: run["rps"] for steps, run in runs.items()}
            results["budget_server_cpu"] = {steps: run["server_cpu"] for steps, run in runs.items()}

        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WAWINDOW_")},
            **services.env(),
            "WAWINDOW_APP_SECRETS": SECRET,
            "WAWINDOW_VERIFY_TOKEN": "bench",
            "WAWINDOW_TOPIC_PREFIX": prefix,
            "WAWINDOW_HTTP_HOST": "127.0.0.1",
            "WAWINDOW_HTTP_PORT": str(port),
            "WAWINDOW_LOG_FORMAT": "json",
            "WAWINDOW_KAFKA_COMPRESSION": args.compression,
        }
        log_path = work / "receiver.log"
        with log_path.open("wb") as log:
            receiver = subprocess.Popen(
                [sys.executable, "-m", "wawindow", "run", "webhook"],
                env=env,
                stderr=log,
                preexec_fn=server_core,  # the bare handler's core, alone
            )
        try:
            url = f"http://127.0.0.1:{port}/webhook"
            wait_ready(f"http://127.0.0.1:{port}/readyz", receiver)
            # Warm-up. A fresh broker's JIT needs about half a minute of load before its
            # round trips settle, and with 64 connections the receiver's rate is bounded by
            # them (aiokafka keeps one request in flight per broker); 10 s gave 2.6k/s, a
            # warm broker 3.5-4.8k/s. A production broker is warm.
            run_wrk(url, script, 30, args.connections)
            results["receiver"] = measured(
                receiver.pid, url, script, args.seconds, args.connections
            )
            half = results["receiver"]["rps"] / 2
            results["receiver_half_load"] = asyncio.run(open_loop(port, bodies, half, args.seconds))
        finally:
            receiver.terminate()
            receiver.wait(30)
        # what the records take on the broker's disk, per webhook accepted
        data = services.kafka.run_dir / "data"
        stored = sum(
            f.stat().st_size
            for d in data.glob(f"{prefix}webhook-events-*")
            for f in d.glob("*.log")
        )
        records = asyncio.run(_record_count(services.kafka_bootstrap, f"{prefix}webhook-events"))
        results["webhook_events_log_bytes"] = stored
        results["webhook_events_records"] = records
        results["log_bytes_per_record"] = round(stored / records, 1) if records else None

    results["ratio"] = round(results["receiver"]["rps"] / results["bare"]["rps"], 3)
    results["events_per_s"] = round(results["receiver"]["rps"] * mean_events)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)

    print(json.dumps(results, indent=2))
    print()
    print(markdown(results))


async def _record_count(bootstrap: str, topic: str) -> int:
    """Records on ``topic``: the sum of its partitions' end offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def markdown(results: dict[str, Any]) -> str:
    b, r, h = results["bare"], results["receiver"], results["receiver_half_load"]
    half_errors = sum(v for k, v in h["statuses"].items() if str(k) != "200")
    rows = [
        "| server | requests/s | p50 ms | p99 ms | non-2xx | server CPU |",
        "|---|---:|---:|---:|---:|---:|",
        f"| bare aiohttp handler (read body, 200) | {b['rps']:.0f} | {b['p50_ms']} "
        f"| {b['p99_ms']} | {b['non_2xx']} | {b['server_cpu']} |",
        f"| wawindow receiver (verify, split, Kafka acks=all) | {r['rps']:.0f} | {r['p50_ms']} "
        f"| {r['p99_ms']} | {r['non_2xx']} | {r['server_cpu']} |",
        f"| receiver, open loop at half its peak | {h['rate']:.0f} | {h['p50_ms']} "
        f"| {h['p99_ms']} | {half_errors} | |",
        "",
        f"ratio receiver/bare: {results['ratio']:.1%}; events/s at peak: {results['events_per_s']}",
    ]
    if "budget" in results:
        cpu = results.get("budget_server_cpu", {})
        rows += [
            "", "| bare handler plus | requests/s | of bare | server CPU |", "|---|---:|---:|---:|"
        ]  # fmt: skip
        rows += [
            f"| {steps} | {rps:.0f} | {rps / b['rps']:.2f} | {cpu.get(steps, '')} |"
            for steps, rps in results["budget"].items()
        ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
