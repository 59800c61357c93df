"""The rules both peers run (quix_window.py, faust_window.py): the core of wawindow's service
window, one conversation per record key (README.md, "What it implements"). Plain Python,
imported by each peer from its own environment; it does not import wawindow."""

from __future__ import annotations

import json
from typing import Any

CSW_SECONDS = 24 * 3600


def new_conversation() -> dict[str, Any]:
    return {"last": None, "ends": None, "inbound": 0, "delivered": 0, "ids": []}


def transition(kind: str, key: str, at: int, ends_at: int, event_id: str) -> dict[str, Any]:
    return {"type": kind, "key": key, "at": at, "ends_at": ends_at, "event_id": event_id}


def apply_event(event: dict[str, Any], conv: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply one event to a conversation's state in place; return its transitions."""
    event_id = event["event_id"]
    ids: list[str] = conv["ids"]
    if event_id in ids:
        return []
    ids.append(event_id)
    key, ts, kind = event["key"], event["timestamp"], event["kind"]
    out: list[dict[str, Any]] = []
    ends = conv["ends"]
    if ends is not None and ends <= ts:
        out.append(transition("closed", key, ends, ends, event_id))
        conv["ends"] = ends = None
    if kind == "message":
        conv["inbound"] += 1
        last = conv["last"]
        if last is None or ts > last:
            conv["last"] = ts
            conv["ends"] = ts + CSW_SECONDS
            opened = "opened" if ends is None else "extended"
            out.append(transition(opened, key, ts, ts + CSW_SECONDS, event_id))
    elif kind == "status" and event["data"].get("status") == "delivered":
        conv["delivered"] += 1
    return out


def report(run: Any, last: tuple[str, float], versions: dict[str, str], settings: Any) -> None:
    """Print a peer's run as one JSON line: ``run`` has ``processed``, ``started``,
    ``committed``, ``cpu_started``, ``cpu_committed`` and ``transitions``; ``last`` names how
    long after the last record its last commit came, and that time."""
    elapsed = run.committed - run.started
    cpu = run.cpu_committed - run.cpu_started
    line = {
        "events": run.processed,
        "seconds": round(elapsed, 2),
        "events_per_s": round(run.processed / elapsed),
        "cpu_us_per_event": round(cpu / run.processed * 1e6, 1),
        "transitions": run.transitions,
        last[0]: round(last[1] * 1000, 1),
        **versions,
        "settings": settings,
    }
    print(json.dumps(line), flush=True)
