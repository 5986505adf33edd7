"""SSH push speed against Debian's real OpenSSH: fieldtui's upload beside ``scp`` of the same file to
the same server, and the HTTP API's upload, in one run.

    sudo .venv/bin/python bench/ssh.py [--mb 200] [--rounds 2]

Needs root (sshd, and a throw-away login made with useradd and removed at the end: tests/real_sshd.py).
One ``/usr/sbin/sshd`` on 127.0.0.1 with ``Subsystem sftp internal-sftp``; per round, into the login's
home:

1. push: ``SSHSession.upload``, the copy step of ``fieldtui push --ssh`` (SFTP in write requests of the
   server's ``max_write_len``), then the remote ``sha256sum`` push runs before ``models add``.
2. scp: ``scp`` of the same file to the same server (OpenSSH 9's scp speaks SFTP too), same key.
   First each as a user runs it, with its own default cipher (fieldtui: aes128-gcm, from
   fieldtui/ssh_defaults.conf; scp: OpenSSH's chacha20-poly1305) -- the target row; then both with
   ``aes128-gcm@openssh.com`` and both with ``chacha20-poly1305@openssh.com``, cipher for cipher.
3. HTTP: ``PUT /v1/models/{version}`` through ``AgentClient.upload_model`` to a real agent, as
   ``fieldtui push`` does; the payload is not a model, so the agent streams and hashes all of it and
   refuses it (422) at validation: the time until that answer is the upload part.

Everything runs on loopback on one (shared) machine: the figures compare code paths (encryption, SFTP
windowing, ASGI streaming), not a LAN. push ÷ scp is the ratio of MB/s; the target is at least 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fieldtui.client import AgentClient  # noqa: E402
from fieldtui.demo import serve_command, stop_process, wait_ready  # noqa: E402
from fieldtui.errors import AgentClientError  # noqa: E402
from fieldtui.protocol import SSHEndpoint  # noqa: E402
from fieldtui.push import file_chunks  # noqa: E402
from fieldtui.ssh import SSHSession  # noqa: E402
from tests.real_sshd import SSHD as SSHD_BIN  # noqa: E402
from tests.real_sshd import DeviceUser, OpenSSHServer, keygen, why_no_sshd  # noqa: E402
from tests.storemodels import detector  # noqa: E402


def make_payload(path: Path, mb: int) -> str:
    """``mb`` MB of random bytes that start like an ONNX protobuf (so nothing refuses them early)."""
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        for i in range(mb):
            chunk = (b"\x08\x08" + block[2:]) if i == 0 else block
            f.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


async def push_round(ssh: SSHSession, payload: Path, folder: str, sha256: str) -> tuple[float, float]:
    """(upload seconds, upload + remote sha256 seconds) of one copy as ``fieldtui push --ssh`` makes it."""
    remote = f"{folder}/bench-{time.monotonic_ns()}.onnx"
    t0 = time.perf_counter()
    how = await ssh.upload(payload, remote)
    t1 = time.perf_counter()
    got = await ssh.sha256(remote)
    t2 = time.perf_counter()
    await ssh.remove(remote)
    if got != sha256 or how != "SFTP":
        raise SystemExit(f"push went by {how} and the device has sha256 {got}, not {sha256}")
    return t1 - t0, t2 - t0


def scp_round(
    server: OpenSSHServer, key: Path, known: Path, payload: Path, folder: str, cipher: str | None
) -> float:
    remote = f"{folder}/scp-{time.monotonic_ns()}.onnx"
    argv = ["scp", "-q", "-P", str(server.port), "-i", str(key), "-o", "IdentitiesOnly=yes"]
    argv += ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
    if cipher:
        argv += ["-c", cipher]
    t0 = time.perf_counter()
    subprocess.run([*argv, str(payload), f"{server.user.name}@127.0.0.1:{remote}"], check=True)
    took = time.perf_counter() - t0
    Path(remote).unlink()
    return took


async def http_round(client: AgentClient, payload: Path, sha256: str, n: int) -> tuple[float, str]:
    size = payload.stat().st_size
    t0 = time.perf_counter()
    try:
        await client.upload_model(f"bench{n}", file_chunks(payload, size), size=size, sha256=sha256)
        outcome = "accepted (unexpected)"
    except AgentClientError as err:
        outcome = f"refused as expected after the upload: HTTP {err.status}"
    return time.perf_counter() - t0, outcome


async def main(args: argparse.Namespace) -> None:
    if why := why_no_sshd():
        raise SystemExit(f"bench/ssh.py: {why}")
    with tempfile.TemporaryDirectory(prefix="fieldtui-bench-ssh-") as tmp_name:
        tmp = Path(tmp_name)
        key = keygen(tmp / "id_ed25519")
        user = DeviceUser(key.with_suffix(".pub").read_text())
        server = OpenSSHServer(tmp / "sshd", user)
        proc = None
        try:
            server.start()
            dot_ssh = tmp / "dot-ssh"
            server.write_console_ssh(dot_ssh, "bench", key)
            with (dot_ssh / "config").open("a") as config:  # the same server, one cipher asked for
                for host, cipher in (("bench-aes", "aes128-gcm"), ("bench-chacha", "chacha20-poly1305")):
                    config.write(
                        f"Host {host}\n  HostName 127.0.0.1\n  Port {server.port}\n  User {user.name}\n"
                        f"  IdentityFile {key}\n  IdentitiesOnly yes\n  Ciphers {cipher}@openssh.com\n"
                    )
            os.environ["FIELDTUI_SSH_DIR"] = str(dot_ssh)
            folder = user.home / "upload"
            folder.mkdir(mode=0o700)
            payload = folder.parent / "payload.onnx"  # read by root (both clients), written into folder
            sha256 = make_payload(payload, args.mb)
            user.chown(user.home)
            mb = payload.stat().st_size / 1e6

            home = tmp / "agent"
            home.mkdir(mode=0o700)
            (home / "config.toml").write_text(f"[models]\nmax_upload_mb = {args.mb * 2}\n")
            log_path = tmp / "serve.log"
            with open(log_path, "wb") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *serve_command(home, "demo:?fps=5&size=320x240", mdns=False),
                    "--model",
                    str(detector(tmp / "small.onnx")),  # a small generated detector: the bench is about bytes
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                )
            info, _ = await wait_ready(proc, home, log_path, 120.0)
            version = subprocess.run([SSHD_BIN, "-V"], capture_output=True, text=True).stderr.strip()
            print(f"payload {mb:.0f} MB; {version} on 127.0.0.1:{server.port}; agent at {info.api_url}")
            print(
                f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}"
            )
            async with (
                await SSHSession.connect(SSHEndpoint(host="bench")) as ssh,
                await SSHSession.connect(SSHEndpoint(host="bench-aes")) as ssh_aes,
                await SSHSession.connect(SSHEndpoint(host="bench-chacha")) as ssh_chacha,
                AgentClient(info.api_url, info.token, timeout=30.0) as client,
            ):
                print(f"push cipher: {ssh.conn.get_extra_info('send_cipher')} (fieldtui's default)")
                rates: dict[str, list[float]] = {
                    k: [] for k in ("push", "scp", "push_aes", "scp_aes", "push_chacha", "http")
                }
                for n in range(args.rounds):
                    up, with_hash = await push_round(ssh, payload, str(folder), sha256)
                    scp = await asyncio.to_thread(
                        scp_round, server, key, dot_ssh / "known_hosts", payload, str(folder), None
                    )
                    up_aes, _ = await push_round(ssh_aes, payload, str(folder), sha256)
                    scp_aes = await asyncio.to_thread(
                        scp_round,
                        server,
                        key,
                        dot_ssh / "known_hosts",
                        payload,
                        str(folder),
                        "aes128-gcm@openssh.com",
                    )
                    up_chacha, _ = await push_round(ssh_chacha, payload, str(folder), sha256)
                    took, outcome = await http_round(client, payload, sha256, n)
                    for name, seconds in (
                        ("push", up),
                        ("scp", scp),
                        ("push_aes", up_aes),
                        ("scp_aes", scp_aes),
                        ("push_chacha", up_chacha),
                        ("http", took),
                    ):
                        rates[name].append(mb / seconds)
                    print(
                        f"round {n + 1}: push {mb / up:6.1f} MB/s (with the remote sha256 {mb / with_hash:5.1f}), "
                        f"scp {mb / scp:6.1f} MB/s; aes128-gcm: push {mb / up_aes:6.1f}, scp {mb / scp_aes:6.1f} MB/s; "
                        f"chacha20: push {mb / up_chacha:6.1f} (scp's default is the scp row); "
                        f"HTTP PUT {mb / took:6.1f} MB/s ({outcome})"
                    )
            best = {k: max(v) for k, v in rates.items()}
            print(
                f"best: push {best['push']:.1f} MB/s, scp {best['scp']:.1f} MB/s, push ÷ scp = "
                f"{best['push'] / best['scp']:.2f} (target >= 0.8); aes128-gcm: push {best['push_aes']:.1f}, "
                f"scp {best['scp_aes']:.1f} MB/s, push ÷ scp = {best['push_aes'] / best['scp_aes']:.2f}; "
                f"chacha20 both: push ÷ scp = {best['push_chacha'] / best['scp']:.2f}; "
                f"HTTP {best['http']:.1f} MB/s, push ÷ HTTP = {best['push'] / best['http']:.2f}"
            )
        finally:
            if proc is not None:
                print(f"agent stopped (exit {await stop_process(proc)})")
            server.stop()
            user.remove()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="payload size in MB (default 200)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each (default 2)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
