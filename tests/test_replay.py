"""``wawindow replay`` and the demo set: signed bodies POSTed to a real receiver."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.cliutil import WAWINDOW, base_env, wait_healthy
from tests.conftest import APP_SECRET, Services
from tests.kafkautil import read_all
from wawindow.dev import demo, samples
from wawindow.dev.replay import ProgressBar, load_bodies
from wawindow.errors import ConfigError
from wawindow.ingest.split import split_body
from wawindow.keys import Topics


def _body(wamid: str) -> dict[str, object]:
    return samples.body(samples.messages_change(messages=[samples.text_message(wamid, 1795680000)]))


def test_jsonl_files_hold_a_body_per_line_and_json_files_one_or_a_list(tmp_path: Path) -> None:
    lines = tmp_path / "bodies.jsonl"
    lines.write_bytes(b"\n".join(samples.encode(_body(f"wamid.l{i}")) for i in range(3)) + b"\n\n")
    single = tmp_path / "one.json"
    single.write_bytes(samples.encode(_body("wamid.s")) + b"\n")
    many = tmp_path / "many.json"
    many.write_bytes(orjson.dumps([_body("wamid.m0"), _body("wamid.m1")]))

    bodies = load_bodies([lines, single, many])

    assert [orjson.loads(b)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
            for b in bodies] == ["wamid.l0", "wamid.l1", "wamid.l2", "wamid.s", "wamid.m0",
                                 "wamid.m1"]  # fmt: skip
    assert bodies[0] == samples.encode(_body("wamid.l0"))  # the exact bytes are signed


def test_a_file_that_is_not_json_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"object": "whatsapp_business_account"}\n{oops\n')

    with pytest.raises(ConfigError, match=r"bad\.jsonl:2"):
        load_bodies([bad])


def test_the_progress_bar_off_a_terminal_writes_a_line_per_tenth(tmp_path: Path) -> None:
    out = tmp_path / "progress.txt"
    with out.open("w") as stream:
        bar = ProgressBar(stream)
        for done in range(1, 101):
            bar(done, 100)

    lines = out.read_text().splitlines()
    assert len(lines) == 10
    assert lines[-1].startswith("[" + "#" * 30 + "] 100/100")


def test_the_demo_set_holds_every_story_it_promises() -> None:
    now = 1795680000
    events = [e for raw in demo.encoded(now) for e in split_body(raw, now * 1000).events]
    kinds = Counter(e.kind for e in events)
    inbound = {e.data["wamid"] for e in events if e.kind == "message"}
    states = [e.data["status"] for e in events if e.kind == "status" and
              e.data["wamid"] == "wamid.demo.a1.out"]  # fmt: skip

    assert len(inbound) == demo.EXPECTED["inbound_messages"]
    assert kinds["message"] == demo.EXPECTED["inbound_messages"] + 1  # one delivered twice
    assert states == ["sent", "read", "delivered", "delivered"]  # out of order, repeated
    assert any(e.data.get("referral") for e in events)  # the free entry point's ad
    assert kinds["user_preference"] == 1
    assert min(e.timestamp or now for e in events) <= now - 24 * 3600  # a window long closed
    assert {e.key.split(":")[0] for e in events} == {demo.NUMBER_A[0], demo.NUMBER_B[0]}


@pytest.mark.kafka
async def test_replay_signs_and_posts_every_body(
    services: Services,
    topic_prefix: str,
    webhook_process: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    base, proc = webhook_process
    await wait_healthy(base, proc)
    lines = tmp_path / "bodies.jsonl"
    lines.write_bytes(b"\n".join(samples.encode(_body(f"wamid.r{i}")) for i in range(5)))
    env = {**base_env(services, topic_prefix), "WAWINDOW_HTTP_PORT": base.rsplit(":", 1)[1]}
    wrong = {**env, "WAWINDOW_APP_SECRETS": "not-the-secret"}

    good = await _run(["replay", str(lines), "--rate", "200"], env)
    refused = await _run(["replay", str(lines), "--url", f"{base}/webhook", "--quiet"], wrong)

    assert good[0] == 0, good[2]
    assert f"5 bodies to {base}/webhook: 5 x 200" in good[1]
    assert "5/5" in good[2]  # the progress bar, on stderr
    assert refused[0] == 1
    assert "5 x 401" in refused[1]
    records = await read_all(services.kafka_bootstrap, Topics(topic_prefix).webhook_events)
    assert sorted(orjson.loads(r.value)["data"]["wamid"] for r in records) == [
        f"wamid.r{i}" for i in range(5)
    ]
    assert APP_SECRET not in good[1] + good[2]


async def _run(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *WAWINDOW, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
