"""A throwaway Ray cluster of several nodes on this machine, for tests, benchmarks and trials.

Each node is one ``ray start`` in its own process group and its own temporary directory, so
that it can be stopped, or killed as if its machine had died, without touching any other Ray
on the machine (``ray stop`` would end them all). Node death is noticed within about a second:
the GCS health check is shortened through Ray's ``RAY_health_check_*`` settings.

With ``tls=True`` every node and the driver use Ray's TLS (a certificate authority and one
node certificate made for the cluster), as the README tells operators to do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The shortened health check: a node whose raylet stops answering is declared dead after
#: about ``period * threshold`` (Ray's defaults take tens of seconds).
HEALTH_CHECK = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}

#: Smallest object store Ray accepts, about; nodes here need no more (frames never enter it).
OBJECT_STORE_BYTES = 80 * 1024 * 1024


class ClusterStartError(RuntimeError):
    """``ray start`` failed; the message holds its output."""


@dataclass
class LocalNode:
    """One ``ray start`` process group: its temporary and spill directories."""

    name: str
    temp_dir: Path
    spill_dir: Path
    process_group: int

    def kill(self) -> None:
        """SIGKILL the node's processes, as a machine that dies would leave them."""
        _signal_group(self.process_group, signal.SIGKILL)


class LocalCluster:
    """A head node and any number of worker nodes under ``root`` (keep the path short: Ray's
    socket paths must fit in 107 bytes)."""

    def __init__(
        self, root: Path, *, tls: bool = False, environment: Mapping[str, str] | None = None, object_store_bytes: int = OBJECT_STORE_BYTES
    ) -> None:
        self.root = Path(root)
        self.object_store_bytes = object_store_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self.nodes: list[LocalNode] = []
        self.address = ""
        self.environment = {**(environment if environment is not None else os.environ), **HEALTH_CHECK,
                            "RAY_USAGE_STATS_ENABLED": "0"}
        if tls:
            self.environment.update(make_tls_files(self.root / "tls"))

    def start_head(self, num_cpus: float = 1, resources: Mapping[str, float] | None = None) -> LocalNode:
        port = _free_port()
        node = self._start("head", ["--head", f"--port={port}", "--include-dashboard=false"], num_cpus, resources)
        self.address = f"127.0.0.1:{port}"
        return node

    def add_node(self, name: str, num_cpus: float = 1, resources: Mapping[str, float] | None = None) -> LocalNode:
        if not self.address:
            raise ClusterStartError("start the head node first")
        return self._start(name, [f"--address={self.address}"], num_cpus, resources)

    def stop(self) -> None:
        """Stop every node (workers first) and wait until their processes are gone."""
        for node in reversed(self.nodes):
            _signal_group(node.process_group, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_group_alive(node.process_group) for node in self.nodes):
            time.sleep(0.1)
        for node in self.nodes:
            _signal_group(node.process_group, signal.SIGKILL)
        self.nodes.clear()

    def scan_roots(self) -> list[Path]:
        """Every directory Ray wrote to: each node's temporary (session) and spill directories."""
        return [path for node in self.nodes for path in (node.temp_dir, node.spill_dir)]

    def _start(self, name: str, role: list[str], num_cpus: float, resources: Mapping[str, float] | None) -> LocalNode:
        temp_dir, spill_dir = self.root / name, self.root / f"{name}-spill"
        for folder in (temp_dir, spill_dir):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        command = [
            str(Path(sys.executable).with_name("ray")), "start", *role, "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}", f"--resources={json.dumps(dict(resources or {}))}",
            f"--temp-dir={temp_dir}", f"--object-spilling-directory={spill_dir}",
            f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats", "--log-style=record",
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=self.environment, start_new_session=True)
        output, _ = process.communicate(timeout=120)
        node = LocalNode(name, temp_dir, spill_dir, process.pid)
        if process.returncode != 0:
            node.kill()
            raise ClusterStartError(f"ray start ({name}) failed with exit code {process.returncode}:\n{output[-3000:]}")
        self.nodes.append(node)
        return node


def make_tls_files(folder: Path) -> dict[str, str]:
    """A certificate authority and one certificate for this machine (localhost, 127.0.0.1 and the
    address Ray picks for it), signed by it; returns the ``RAY_USE_TLS``/``RAY_TLS_*`` environment
    that makes Ray's gRPC channels use them."""
    from datetime import UTC, datetime, timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.now(UTC)
    addresses = [x509.IPAddress(IPv4Address(ip)) for ip in sorted({"127.0.0.1", _outward_address()})]

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
                    signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), *addresses]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, node_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("openfrt test CA", ca_key, None, ca_key, ca=True)
    node_cert = certificate("localhost", node_key, ca_cert.subject, ca_key, ca=False)
    files = {
        "RAY_TLS_CA_CERT": (folder / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM)),
        "RAY_TLS_SERVER_CERT": (folder / "node.crt", node_cert.public_bytes(serialization.Encoding.PEM)),
        "RAY_TLS_SERVER_KEY": (folder / "node.key", node_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
    }
    for path, data in files.values():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
    return {"RAY_USE_TLS": "1", **{variable: str(path) for variable, (path, _) in files.items()}}


def _outward_address() -> str:
    """The address Ray advertises for this machine (its outward interface), found as Ray finds
    it: the local end of a UDP "connection", which sends nothing. Not ``import ray``: Ray reads
    its TLS settings when imported, and they are made here."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("8.8.8.8", 80))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _signal_group(group: int, number: int) -> None:
    try:
        os.killpg(group, number)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
