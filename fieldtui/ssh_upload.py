"""Copying a file to a device over an open SSH connection, whichever SSH server the device runs.

- SFTP first, in write requests no larger than the server allows. OpenSSH's sftp-server (also what
  Dropbear runs when ``openssh-sftp-server`` is installed) advertises ``limits@openssh.com`` and drops
  the connection on a longer write (its ``max_write_len`` is 261120 bytes, just under 256 KiB); asyncssh
  reads the limits when the SFTP session starts (``SFTPClient.limits``) and falls back to 16 KiB for a
  server that advertises none.
- Where the device has no SFTP server (OpenSSH without a ``Subsystem sftp`` line, Dropbear without
  ``sftp-server``: many Yocto and Buildroot images), the bytes go through an exec channel into
  ``cat > FILE``. The caller checks the sha256 on the device either way, so a short or damaged stream
  is caught before the agent sees the file.

Before a byte is sent the free space of the target folder is read with ``df``: a model that cannot fit
is refused with the figures instead of filling the device's disk half-way.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from fieldtui.errors import ConsoleError

SFTP = "SFTP"
STREAM = "`cat` over SSH (the device has no SFTP server)"
CHUNK = 1 << 18
MAX_BLOCK = 1 << 18  # even where a server allows more: asyncssh keeps up to 16 blocks in flight
MIN_FREE = 1 << 20  # what the agent's own files need beside the upload (state.db, logs)

Progress = Callable[[int, int], None]


class UploadFailed(ConsoleError):
    """The copy failed: one line saying why (the disk is full, the link dropped, what ``cat`` said)."""


def sftp_block_size(limits: Any) -> int:
    """The largest write request the server accepts (asyncssh's 16 KiB when it says nothing), capped."""
    return max(1, min(int(limits.max_write_len or 0) or 16 * 1024, MAX_BLOCK))


async def free_bytes(conn: asyncssh.SSHClientConnection, folder: str) -> int | None:
    """Bytes available to the SSH user under ``folder`` (its nearest existing parent), from POSIX ``df``;
    None when ``df`` cannot say (then nothing is refused for it)."""
    script = 'd=$1; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; df -Pk "$d"'
    try:
        result = await conn.run(shlex.join(["sh", "-c", script, "sh", folder]), check=False)
    except (asyncssh.Error, OSError):
        return None
    lines = (result.stdout or "").strip().splitlines()
    fields = lines[-1].split() if result.exit_status == 0 and lines else []
    return int(fields[3]) * 1024 if len(fields) >= 4 and fields[3].isdigit() else None


async def copy_file(
    conn: asyncssh.SSHClientConnection, host: str, local: Path, remote: str, on_progress: Progress
) -> str:
    """``local`` to ``remote`` (its folder made 0700 if missing); the way it went (:data:`SFTP` or
    :data:`STREAM`). :class:`UploadFailed` with one line saying why otherwise."""
    size = local.stat().st_size
    folder = remote.rsplit("/", 1)[0]
    free = await free_bytes(conn, folder)
    if free is not None and free < size + MIN_FREE:
        raise UploadFailed(
            f"the device has {free / 1e6:.1f} MB free in {folder} and the model needs {size / 1e6:.1f} MB "
            "(plus 1 MB for the agent): free some space (`fieldtui models HOST` lists versions to delete) "
            "and push again; nothing was sent"
        )
    try:
        sftp = await conn.start_sftp_client()
    except (asyncssh.Error, OSError) as err:
        if conn.is_closed():
            raise _failure(conn, host, remote, SFTP, err) from None
        sftp = None  # refused or ended at once: no SFTP server on the device (the link is fine)
    if sftp is None:
        await _stream(conn, host, local, remote, size, on_progress)
        return STREAM
    try:
        async with sftp:
            await sftp.makedirs(folder, attrs=asyncssh.SFTPAttrs(permissions=0o700), exist_ok=True)
            await sftp.put(
                str(local),
                remote,
                block_size=sftp_block_size(sftp.limits),
                progress_handler=lambda _s, _d, done, total: on_progress(done, total),
            )
    except (asyncssh.Error, OSError) as err:
        raise _failure(conn, host, remote, SFTP, err, await _disk_full(conn, folder)) from None
    return SFTP


async def _stream(
    conn: asyncssh.SSHClientConnection, host: str, local: Path, remote: str, size: int, on_progress: Progress
) -> None:
    folder = remote.rsplit("/", 1)[0]
    command = f"umask 077 && mkdir -p {shlex.quote(folder)} && cat > {shlex.quote(remote)}"
    sent = 0
    try:
        process = await _exec(conn, command)
        with local.open("rb") as f:
            while block := await asyncio.to_thread(f.read, CHUNK):
                process.stdin.write(block)
                await process.stdin.drain()
                sent += len(block)
                on_progress(sent, size)
        process.stdin.write_eof()
        result = await process.wait()
    except (asyncssh.Error, OSError, BrokenPipeError) as err:
        raise _failure(conn, host, remote, "cat", err, await _disk_full(conn, folder)) from None
    if result.exit_status != 0:
        stderr = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else result.stderr
        lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {result.exit_status}"
        if "No space left" in reason:
            reason = await _disk_full(conn, folder) or reason
        raise UploadFailed(f"upload to {host}:{remote} through `cat` failed: {reason}")


async def _exec(conn: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHClientProcess:
    """``command`` with binary stdin; asked again twice if refused while the link is up (Dropbear
    2022.83 now and then refuses the session request that follows a failed SFTP one)."""
    for attempt in range(3):
        try:
            return await conn.create_process(command, encoding=None)
        except asyncssh.ChannelOpenError:
            if attempt == 2 or conn.is_closed():
                raise
            await asyncio.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


async def _disk_full(conn: asyncssh.SSHClientConnection, folder: str) -> str | None:
    """The sentence to show when a full disk is why a write failed (SFTP only says "Failure"), or None."""
    if conn.is_closed():
        return None
    free = await free_bytes(conn, folder)
    if free is not None and free < MIN_FREE:
        return (
            f"the device's disk is full ({free / 1e6:.1f} MB free in {folder}): free some space "
            "(`fieldtui models HOST` lists versions to delete) and push again"
        )
    return None


def _failure(
    conn: asyncssh.SSHClientConnection,
    host: str,
    remote: str,
    how: str,
    err: BaseException,
    why: str | None = None,
) -> UploadFailed:
    reason = why or getattr(err, "reason", None) or str(err) or type(err).__name__
    if why is None and conn.is_closed():
        reason = f"the SSH connection dropped ({reason})"
    what = f"SFTP upload to {host}:{remote}" if how == SFTP else f"upload to {host}:{remote} through `cat`"
    return UploadFailed(f"{what} failed: {reason}")
