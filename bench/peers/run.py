"""Run a peer of the worker benchmark (bench/peers/README.md) over the benchmark's records,
each in its own process and virtual environment: the Quix Streams peer (``quix``) and the
faust-streaming peer (``faust``)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent  # bench/, as in worker_throughput.py


# name -> (its virtual environment, its requirements, its application)
PEERS = {
    "quix": (".venv-peers", "requirements.txt", "quix_window.py"),
    "faust": (".venv-peers-faust", "faust-requirements.txt", "faust_window.py"),
}


async def peer_rate(name: str, bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    """Events/s and CPU per event of the peer ``name`` over the same records: run in its own
    process, with the Python of its virtual environment (created here when missing, refreshed
    when its requirements change), a fresh consumer group and state directory. Its JSON
    report is returned as it printed it."""
    import shutil
    import tempfile

    root = HERE.parent
    venv_name, requirements_name, application = PEERS[name]
    venv = root / venv_name
    python = venv / "bin" / "python"
    requirements = HERE / "peers" / requirements_name
    installed = venv / "installed-requirements.txt"

    async def call(argv: list[str], timeout_s: float) -> bytes:
        """Run ``argv`` to the end within ``timeout_s``; its stdout, or an error with its
        stderr when it fails."""
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"{argv[0]} {argv[1]} did not finish in {timeout_s:.0f} s") from None
        if proc.returncode != 0:
            tail = err.decode(errors="replace")[-4000:]
            raise RuntimeError(f"{' '.join(argv[:3])} exited with {proc.returncode}:\n{tail}")
        return out

    wanted = await asyncio.to_thread(requirements.read_text)
    if not await asyncio.to_thread(python.exists):
        await call([sys.executable, "-m", "venv", str(venv)], 300)
    if not await asyncio.to_thread(installed.exists) or (
        await asyncio.to_thread(installed.read_text) != wanted
    ):
        pip = str(venv / "bin" / "pip")
        await call([pip, "install", "-q", "-r", str(requirements)], 900)
        await asyncio.to_thread(installed.write_text, wanted)
    state_dir = await asyncio.to_thread(tempfile.mkdtemp, prefix=f"wawindow-{name}-peer-")
    try:
        out = await call(
            [
                str(python), str(HERE / "peers" / application),
                "--bootstrap", bootstrap, "--topic", topic, "--count", str(count),
                "--group", f"{name}-peer-{uuid.uuid4().hex[:6]}", "--state-dir", state_dir,
            ],
            20 * 60,
        )  # fmt: skip
    finally:
        await asyncio.to_thread(shutil.rmtree, state_dir, True)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the {name} peer printed no report: {out.decode()[-2000:]!r}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report
