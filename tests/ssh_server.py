"""A real SSH server on 127.0.0.1 for tests: asyncssh, public-key auth, exec and SFTP.

Exec requests run as subprocesses: ``fieldtui-agent ARGS`` becomes ``sys.executable -m agent ARGS`` (the
real agent CLI from this checkout) with ``FIELDTUI_AGENT_HOME`` set to the device's home; anything else
runs under ``/bin/sh -c`` as sshd would. SFTP serves the real file system (no chroot). The host key and
the authorized client key are generated in a temp dir; :meth:`SSHTestServer.write_client_dir` writes the
console side (``config`` with a ``Host`` alias and ``IdentityFile``, optionally ``known_hosts``), the dir
``FIELDTUI_SSH_DIR`` points at.

The server runs its own event loop in a thread, so both sync tests (the ``fieldtui`` CLI calls
``asyncio.run``) and async tests can use it. ``cut_upload_after`` aborts the SSH connection once an SFTP
upload has written that many bytes: a push cut off half-way.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import Any

import asyncssh

REPO = Path(__file__).resolve().parent.parent


class SSHTestServer:
    def __init__(self, tmp: Path, agent_home: Path, *, path_prepend: Path | None = None) -> None:
        self.tmp = tmp
        self.agent_home = agent_home
        self.path_prepend = path_prepend
        self.cut_upload_after: int | None = None
        self.commands: list[str] = []  # every exec request, for assertions
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_path = tmp / "id_test"
        self.client_key.write_private_key(str(self.client_key_path))
        os.chmod(self.client_key_path, 0o600)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ssh-test-server", daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SSHTestServer:
        self._thread.start()
        self._server = self._call(self._start())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _start(self) -> asyncssh.SSHAcceptor:
        authorized = asyncssh.import_authorized_keys(self.client_key.export_public_key().decode())
        return await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=authorized,
            process_factory=self._exec,
            sftp_factory=lambda chan: _CuttingSFTP(chan, self),
            allow_scp=False,
        )

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def replace_host_key(self) -> None:
        """Restart with a new host key on the same port: what a reinstalled (or spoofed) device shows."""
        self._call(self._stop())
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")

        async def again() -> asyncssh.SSHAcceptor:
            authorized = asyncssh.import_authorized_keys(self.client_key.export_public_key().decode())
            return await asyncssh.create_server(
                asyncssh.SSHServer,
                "127.0.0.1",
                self.port,
                server_host_keys=[self.host_key],
                authorized_client_keys=authorized,
                process_factory=self._exec,
                sftp_factory=lambda chan: _CuttingSFTP(chan, self),
                allow_scp=False,
                reuse_address=True,
            )

        self._server = self._call(again())

    # --- the console's side ---------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return self.host_key.get_fingerprint("sha256")

    def write_client_dir(self, folder: Path, alias: str = "dock-1", *, known: bool = True) -> Path:
        """A ~/.ssh stand-in: ``Host alias`` -> this server, our key; known_hosts with its key if ``known``."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (folder / "config").write_text(
            f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.port}\n  User tech\n"
            f"  IdentityFile {self.client_key_path}\n  IdentitiesOnly yes\n"
        )
        if known:
            key = self.host_key.export_public_key().decode().split()
            (folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n")
        return folder

    # --- exec -----------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTUI_")}
        env["FIELDTUI_AGENT_HOME"] = str(self.agent_home)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        if self.path_prepend is not None:
            env["PATH"] = f"{self.path_prepend}{os.pathsep}{env.get('PATH', '')}"
        return env

    async def _exec(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command or ""
        self.commands.append(command)
        argv = shlex.split(command)
        shimmed = self.path_prepend is not None and (self.path_prepend / "fieldtui-agent").exists()
        if argv and argv[0] == "fieldtui-agent" and not shimmed:  # a test's own wrapper runs from PATH
            argv = [sys.executable, "-m", "agent", *argv[1:]]
        else:
            argv = ["/bin/sh", "-c", command]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
            cwd=REPO,
        )
        out, err = await proc.communicate()
        process.stdout.write(out.decode(errors="replace"))
        process.stderr.write(err.decode(errors="replace"))
        process.exit(proc.returncode or 0)


class _CuttingSFTP(asyncssh.SFTPServer):
    """The real file system over SFTP; drops the whole connection past ``cut_upload_after`` bytes."""

    def __init__(self, chan: asyncssh.SSHServerChannel, server: SSHTestServer) -> None:
        super().__init__(chan)
        self.test_server = server
        self.written = 0

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        limit = self.test_server.cut_upload_after
        if limit is not None and self.written + len(data) > limit:
            self.channel.get_connection().abort()
            raise asyncssh.SFTPConnectionLost("cut off by the test")
        self.written += len(data)
        return super().write(file_obj, offset, data)  # type: ignore[arg-type]


def main() -> None:
    """``python -m tests.ssh_server DIR AGENT_HOME ALIAS``: serve from another process (for bench/ssh.py,
    so client and server do not share one interpreter). Writes ``DIR/dot-ssh`` for the console, prints
    the port on stdout and serves until stdin closes."""
    folder, home, alias = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    server = SSHTestServer(folder, home).start()
    server.write_client_dir(folder / "dot-ssh", alias)
    print(server.port, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
