"""``fieldtui registry serve DIR``: the laptop as the model registry of the devices on site.

The folder holds model files named by version (``v7.onnx``, ``2024.06.1.onnx``; ``.engine`` and ``.hef``
too). Devices in pull mode (``[models] registry = "http://LAPTOP:8471"``) poll::

    GET /latest?device_id=ID   ->  {"version", "download_url", "sha256", "size"}
    GET /models/<file>         ->  the file

Which version a device gets: ``DIR/devices/<device id>`` (a text file naming a version) if there is one,
else the version of a staged rollout (``DIR/rollout.json``, written by ``fieldtui registry rollout``),
else ``DIR/latest`` (the same for every device), else the newest model file. A rollout's offer carries
``rollout: {id, percent}`` and each device decides for itself whether it is in the cohort, so the answer
stays plain JSON that a static file could equally provide: beyond one site any web server, object store
or CDN can be the registry. With ``--sign KEY`` every offer carries an Ed25519 signature
(fieldtui/registry_signing.py). A small asyncio server on the standard library: no framework on the
console side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from fieldtui.errors import ConsoleError
from fieldtui.protocol import RegistryOffer, RegistryRollout
from fieldtui.push import VERSION_RE, valid_version

if TYPE_CHECKING:
    from fieldtui.registry_signing import OfferSigner

log = logging.getLogger("fieldtui.registry")

DEFAULT_PORT = 8471
SUFFIXES = (".onnx", ".engine", ".hef", ".tflite")
ROLLOUT_FILE = "rollout.json"


class ModelFolder:
    """The models in a folder, with their sha256 computed once per (size, mtime)."""

    def __init__(self, root: Path | str, signer: OfferSigner | None = None) -> None:
        named = str(root)  # as typed: Path() folds "//", and the console redacts what looks like a URI
        root = Path(root)
        try:
            is_dir = root.is_dir()
        except OSError as err:  # a name too long for the filesystem, a folder we may not enter
            raise ConsoleError(f"cannot use {named[:80]} as the folder of models: {err.strerror}") from None
        if not is_dir:
            raise ConsoleError(f"{named} is not a folder of models; create it and put .onnx files in it")
        self.root = root
        self.signer = signer
        self._hashes: dict[Path, tuple[tuple[int, int], str]] = {}

    def models(self) -> dict[str, Path]:
        """version -> file, for every model file whose stem is a valid version name."""
        found: dict[str, Path] = {}
        for path in sorted(self.root.iterdir()):
            if path.suffix.lower() in SUFFIXES and path.is_file():
                if valid_version(path.stem):
                    found[path.stem] = path
                else:
                    log.warning(
                        "%s: not a valid version name; rename it (letters, digits, . _ - +)", path.name
                    )
        return found

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns)
        cached = self._hashes.get(path)
        if cached and cached[0] == key:
            return cached[1]
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        self._hashes[path] = (key, digest.hexdigest())
        return digest.hexdigest()

    def _pinned(self, name: str) -> str | None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            return (self.root / name).read_text().strip() or None
        return None

    def rollout(self) -> tuple[str, RegistryRollout] | None:
        """The staged rollout under way: (version, {id, percent}), or None."""
        try:
            data = json.loads((self.root / ROLLOUT_FILE).read_text())
            return str(data["version"]), RegistryRollout(id=data["id"], percent=data["percent"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning(
                "%s is unreadable (%s); rewrite it with `fieldtui registry rollout`", ROLLOUT_FILE, err
            )
            return None

    def choose(self, device_id: str | None) -> tuple[Path, RegistryRollout | None] | None:
        models = self.models()
        pinned, rollout = None, None
        if device_id and VERSION_RE.fullmatch(device_id):
            pinned = self._pinned(f"devices/{device_id}")
        if pinned is None and (staged := self.rollout()) is not None:
            pinned, rollout = staged
        pinned = pinned or self._pinned("latest")
        if pinned is not None:
            if pinned not in models:
                log.warning("the pinned version %r has no model file in %s", pinned, self.root)
                return None
            return models[pinned], rollout
        newest = max(models.values(), key=lambda p: p.stat().st_mtime_ns, default=None)
        return (newest, None) if newest is not None else None

    def offer(self, device_id: str | None) -> RegistryOffer | None:
        chosen = self.choose(device_id)
        if chosen is None:
            return None
        path, rollout = chosen
        offer = RegistryOffer(
            version=path.stem,
            download_url=f"models/{path.name}",
            sha256=self.sha256(path),
            size=path.stat().st_size,
            rollout=rollout,
        )
        return self.signer.sign(offer) if self.signer is not None else offer

    def set_rollout(self, version: str, percent: float, rollout_id: str | None = None) -> str:
        """Start, widen, narrow or (at 100 %) end the staged rollout of ``version``; what was done.

        The rollout keeps its id while only the percent changes, so every device keeps its place
        and raising the percent only adds devices. 100 % ends it: ``latest`` names the version and the
        offer no longer carries a rollout. Files are replaced atomically; a registry serving the
        folder picks the change up at the next poll.
        """
        if version not in self.models():
            raise ConsoleError(f"no model file for version {version!r} in {self.root}; copy it there first")
        if not 0.0 <= percent <= 100.0:
            raise ConsoleError(f"--percent {percent:g} is out of range; use 0 to 100")
        current = self.rollout()
        if rollout_id is None:
            same = current is not None and current[0] == version
            rollout_id = current[1].id if same else version  # type: ignore[index]
        if not VERSION_RE.fullmatch(rollout_id):
            raise ConsoleError(f"rollout id {rollout_id!r}: use letters, digits, . _ - + (up to 64)")
        if percent >= 100.0:
            _write_atomic(self.root / "latest", version + "\n")
            (self.root / ROLLOUT_FILE).unlink(missing_ok=True)
            return f"rollout of {version} ended: every device is offered it (latest = {version})"
        body = {"id": rollout_id, "version": version, "percent": percent}
        _write_atomic(self.root / ROLLOUT_FILE, json.dumps(body, indent=2) + "\n")
        was = ""
        if current is not None:
            was = (
                f" (was {current[1].percent:g}%)"
                if current[0] == version
                else f" (replaces the rollout of {current[0]} at {current[1].percent:g}%)"
            )
        note = (
            "; devices that already took it keep it"
            if current is not None and current[0] == version and percent < current[1].percent
            else ""
        )
        return f"rollout {rollout_id!r}: {version} offered to {percent:g}% of devices{was}{note}"

    def file(self, name: str) -> Path | None:
        """A model file by its name (no folders, no traversal)."""
        return self.models().get(Path(name).stem) if "/" not in name and "\\" not in name else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RegistryServer:
    """HTTP/1.1 (one request per connection) over a :class:`ModelFolder`."""

    def __init__(self, folder: ModelFolder, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
        self.folder, self.host, self.port = folder, host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; the bound port (``port=0`` picks one)."""
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as err:
            raise ConsoleError(
                f"cannot listen on {self.host}:{self.port}: {err.strerror}; choose --port"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        async with self._server:  # type: ignore[union-attr]
            await self._server.serve_forever()  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            await self._respond(method, target, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError):
            pass  # not HTTP, or gone: nothing worth answering
        except ConnectionError:
            pass
        except Exception:  # noqa: BLE001 - one bad request must not stop the registry
            log.exception("registry request from %s failed", peer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, method: str, target: str, writer: asyncio.StreamWriter) -> None:
        if method not in ("GET", "HEAD"):
            return await self._json(writer, 405, {"detail": f"{method} is not allowed; use GET"}, method)
        url = urlsplit(target)
        path = unquote(url.path)
        if path in ("/latest", "/latest.json"):
            device_id = (parse_qs(url.query).get("device_id") or [None])[0]
            offer = await asyncio.to_thread(self.folder.offer, device_id)
            if offer is None:
                return await self._json(
                    writer, 404, {"detail": f"no model to offer in {self.folder.root}"}, method
                )
            log.info("offered %s to device %s", offer.version, device_id or "(no id)")
            return await self._json(writer, 200, offer.model_dump(exclude_none=True), method)
        if path.startswith("/models/"):
            model = self.folder.file(path.removeprefix("/models/"))
            if model is not None:
                return await self._file(writer, model, method)
        await self._json(
            writer, 404, {"detail": f"no {path} here; devices ask GET /latest?device_id=ID"}, method
        )

    @staticmethod
    async def _json(writer: asyncio.StreamWriter, status: int, body: dict, method: str) -> None:
        data = json.dumps(body).encode()
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Cache-Control: no-cache\r\nConnection: close\r\n\r\n".encode()
        )
        if method != "HEAD":
            writer.write(data)
        await writer.drain()

    @staticmethod
    async def _file(writer: asyncio.StreamWriter, path: Path, method: str) -> None:
        with path.open("rb") as f:
            size = path.stat().st_size
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            if method != "HEAD":
                loop = asyncio.get_running_loop()
                await loop.sendfile(writer.transport, f)
        log.info("sent %s (%d bytes)", path.name, size)


async def serve(
    root: Path,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    on_ready=None,
    signer: OfferSigner | None = None,
) -> None:
    """Serve ``root`` until cancelled (every offer signed by ``signer`` when given); ``on_ready(port)``
    once listening."""
    server = RegistryServer(ModelFolder(root, signer), host, port)
    bound = await server.start()
    if on_ready is not None:
        on_ready(bound)
    try:
        await server.serve_forever()
    finally:
        await server.close()
