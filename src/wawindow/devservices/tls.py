"""A local certificate authority for one run of the secured dev services: a CA, a server
certificate for ``127.0.0.1`` and ``localhost``, and a client certificate, made with the
system's ``openssl`` (PEM files, unencrypted keys, valid for two days)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wawindow.errors import ServiceStartError


@dataclass(frozen=True, slots=True)
class LocalCA:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def server_bundle(self) -> Path:
        """The server's key and certificate in one PEM file (a Kafka PEM keystore)."""
        return self.directory / "server-bundle.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @classmethod
    def create(cls, directory: Path, name: str = "wawindow-dev") -> LocalCA:
        """Make the CA and its certificates in ``directory`` (kept if already there)."""
        ca = cls(directory)
        if ca.server_bundle.exists():
            return ca
        openssl = shutil.which("openssl")
        if openssl is None:
            raise ServiceStartError("openssl is not installed; apt-get install -y openssl")
        directory.mkdir(parents=True, exist_ok=True)

        def run(*args: str) -> None:
            result = subprocess.run(
                [openssl, *args], cwd=directory, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise ServiceStartError(f"openssl {args[0]} failed: {result.stderr.strip()}")

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN={name} CA", "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
        for who, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("client", f"DNS:{name}")):
            run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name} {who}",
                "-keyout", f"{who}.key", "-out", f"{who}.csr")  # fmt: skip
            ext = directory / f"{who}.ext"
            ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
            run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", f"{who}.pem",
                "-extfile", ext.name)  # fmt: skip
        # Kafka's PEM keystore wants a PKCS#8 key
        run("pkcs8", "-topk8", "-nocrypt", "-in", "server.key", "-out", "server.p8")
        ca.server_bundle.write_text(
            (directory / "server.p8").read_text() + ca.server_cert.read_text()
        )
        return ca
