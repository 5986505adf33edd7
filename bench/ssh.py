"""SSH push speed: SFTP of a 200 MB file against the same file over the HTTP API, in one run.

    .venv/bin/python bench/ssh.py [--mb 200] [--rounds 2]

One real agent subprocess on 127.0.0.1 (a small generated detector on the demo source at 5 fps, so it
idles) and the test SSH server in its own process (tests/ssh_server.py: asyncssh, its SFTP writing to
the real disk) for the same agent home. Per round:

1. SFTP: ``SSHSession.upload`` into the agent's staging area, as ``fieldtui push --ssh`` does, then the
   remote ``sha256sum`` that push runs before ``models add``; MB/s of the upload alone and of both.
   Once with asyncssh's default cipher (chacha20-poly1305) and once with ``Ciphers aes128-gcm@openssh.com``
   from ~/.ssh/config (AES-NI makes it cheaper on x86; a Raspberry Pi 4 has no AES instructions).
2. HTTP: ``PUT /v1/models/{version}`` through ``AgentClient.upload_model``, as ``fieldtui push`` does.
   The payload is not a model, so the agent streams and hashes all of it and then refuses it (422)
   at validation: the time until that answer is the upload part, and that is what is printed.

Both links run on loopback on the same (shared) machine: the figures compare the two code paths'
costs (encryption, SFTP windowing, ASGI streaming), not a LAN. ``models add`` afterwards (loading
the model) costs the same on both links and is not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
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


async def sftp_round(ssh: SSHSession, payload: Path, staging: str, sha256: str) -> tuple[float, float]:
    remote = f"{staging}/bench-{time.monotonic_ns()}.onnx"
    t0 = time.perf_counter()
    await ssh.upload(payload, remote)
    t1 = time.perf_counter()
    got = await ssh.sha256(remote)
    t2 = time.perf_counter()
    await ssh.remove(remote)
    if got != sha256:
        raise SystemExit(f"sha256 mismatch after SFTP: {got} != {sha256}")
    return t1 - t0, t2 - t0


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
    with tempfile.TemporaryDirectory(prefix="fieldtui-bench-ssh-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "agent"
        home.mkdir(mode=0o700)
        (home / "config.toml").write_text(f"[models]\nmax_upload_mb = {args.mb * 2}\n")
        payload = tmp / "payload.onnx"
        sha256 = make_payload(payload, args.mb)
        mb = payload.stat().st_size / 1e6
        # The SSH server in its own process, as sshd is: sharing this interpreter would halve SFTP.
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.ssh_server",
            str(tmp),
            str(home),
            "bench",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        ssh_port = int((await server.stdout.readline()).decode() or 0)
        os.environ["FIELDTUI_SSH_DIR"] = str(tmp / "dot-ssh")
        with (tmp / "dot-ssh" / "config").open("a") as config:  # the same server, AES-GCM asked for
            config.write(
                f"Host bench-aes\n  HostName 127.0.0.1\n  Port {ssh_port}\n  User tech\n"
                f"  IdentityFile {tmp / 'id_test'}\n  IdentitiesOnly yes\n  Ciphers aes128-gcm@openssh.com\n"
            )
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
        try:
            info, _ = await wait_ready(proc, home, log_path, 120.0)
            print(f"payload {mb:.0f} MB; agent at {info.api_url}; SSH server on 127.0.0.1:{ssh_port}")
            print(
                f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}"
            )
            staging = str(home / "models" / ".staging")
            async with (
                await SSHSession.connect(SSHEndpoint(host="bench")) as ssh,
                await SSHSession.connect(SSHEndpoint(host="bench-aes")) as ssh_aes,
                AgentClient(info.api_url, info.token, timeout=30.0) as client,
            ):
                cipher = ssh.conn.get_extra_info("send_cipher")
                print(
                    f"SFTP cipher: {cipher} (asyncssh's first choice); also aes128-gcm via ~/.ssh/config Ciphers"
                )
                rates: dict[str, list[float]] = {"sftp": [], "sftp_aes": [], "http": []}
                for n in range(args.rounds):
                    up, with_hash = await sftp_round(ssh, payload, staging, sha256)
                    up_aes, _ = await sftp_round(ssh_aes, payload, staging, sha256)
                    took, outcome = await http_round(client, payload, sha256, n)
                    rates["sftp"].append(mb / up)
                    rates["sftp_aes"].append(mb / up_aes)
                    rates["http"].append(mb / took)
                    print(
                        f"round {n + 1}: SFTP {mb / up:6.1f} MB/s ({up:.2f} s; with the remote sha256 "
                        f"{mb / with_hash:5.1f} MB/s)  SFTP aes128-gcm {mb / up_aes:6.1f} MB/s  "
                        f"HTTP PUT {mb / took:6.1f} MB/s ({took:.2f} s; {outcome})"
                    )
            best = {k: max(v) for k, v in rates.items()}
            print(
                f"best: SFTP {best['sftp']:.1f} MB/s, SFTP aes128-gcm {best['sftp_aes']:.1f} MB/s, "
                f"HTTP {best['http']:.1f} MB/s; SFTP/HTTP = {best['sftp'] / best['http']:.2f}, "
                f"SFTP aes128-gcm/HTTP = {best['sftp_aes'] / best['http']:.2f}"
            )
        finally:
            code = await stop_process(proc)
            server.stdin.close()
            await server.wait()
            print(f"agent stopped (exit {code})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="payload size in MB (default 200)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each (default 2)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
