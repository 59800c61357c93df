"""Toxiproxy, for network faults in the tests: a TCP proxy in front of a service whose link
can be cut, slowed or turned into a black hole (bytes accepted, nothing ever answered: a
half-open connection). Built from the Go module proxy by ``scripts/deploy-tools``."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from wawindow.devservices.process import ManagedProcess, free_port
from wawindow.errors import ServiceStartError


class Toxiproxy:
    """One toxiproxy-server on loopback, its API on ``api_port``."""

    def __init__(self, binary: Path, run_dir: Path, *, die_with_parent: bool = True) -> None:
        if not binary.exists():
            raise ServiceStartError(f"{binary} is missing; run ./scripts/deploy-tools")
        self.api_port = free_port()
        self._process = ManagedProcess(
            "toxiproxy",
            [str(binary), "-host", "127.0.0.1", "-port", str(self.api_port)],
            run_dir / "toxiproxy.log",
            die_with_parent=die_with_parent,
        )

    def start(self, timeout_s: float = 30.0) -> None:
        self._process.start()
        self._process.wait_until(self._answers, timeout_s, "answering its API")

    def stop(self) -> None:
        self._process.stop()

    def proxy(self, name: str, upstream_port: int) -> int:
        """A proxy to ``127.0.0.1:upstream_port``; returns the port to connect to instead."""
        port = free_port()
        proxy = {"name": name, "listen": f"127.0.0.1:{port}",
                 "upstream": f"127.0.0.1:{upstream_port}"}  # fmt: skip
        self._call("POST", "/proxies", proxy)
        return port

    def black_hole(self, name: str) -> None:
        """From now on the proxy takes bytes and answers nothing, on every connection."""
        for stream in ("upstream", "downstream"):
            toxic = {"name": f"black_hole_{stream}", "type": "timeout", "stream": stream,
                     "attributes": {"timeout": 0}}  # fmt: skip
            self._call("POST", f"/proxies/{name}/toxics", toxic)

    def heal(self, name: str) -> None:
        """Remove every toxic of the proxy."""
        for stream in ("upstream", "downstream"):
            self._call("DELETE", f"/proxies/{name}/toxics/black_hole_{stream}")

    def _answers(self) -> bool:
        try:
            self._call("GET", "/version")
        except OSError:
            return False
        return True

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return bytes(response.read())
