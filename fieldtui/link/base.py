"""The :class:`DeviceLink` interface every link to a device implements (fieldtui/link/http.py,
fieldtui/link/ssh.py, and the HTTP-then-SSH ``FallbackLink`` in fieldtui/link/fallback.py), and the callback
types its operations take. Which link a command gets is decided in fieldtui/link/fallback.py (:func:`open_link`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fieldtui.protocol import (
    Ack,
    BackendInfo,
    BenchmarkRequest,
    BenchmarkRun,
    CameraChange,
    CameraList,
    CameraStatus,
    DeviceStatus,
    EngineList,
    EngineRebuildRequest,
    EngineRebuildResult,
    Job,
    LinkKind,
    LogPage,
    ModelList,
    PushResult,
)
from fieldtui.push import ProgressFn

NoticeFn = Callable[[str], None]
BenchProgressFn = Callable[[float, str], None]  # (fraction done, stage)


class DeviceLink:
    """The console operations on one device. ``async with`` closes the connection."""

    kind: LinkKind

    async def status(self) -> DeviceStatus:
        raise NotImplementedError

    async def logs(self, lines: int = 100) -> LogPage:
        raise NotImplementedError

    async def restart(self) -> Ack:
        raise NotImplementedError

    async def push(
        self,
        path: Path,
        version: str,
        *,
        activate: bool = False,
        on_progress: ProgressFn | None = None,
        force: bool = False,
    ) -> PushResult:
        raise NotImplementedError

    async def activate(self, version: str, *, force: bool = False) -> Job:
        raise NotImplementedError

    async def rollback(self) -> Job:
        raise NotImplementedError

    async def models(self) -> ModelList:
        raise NotImplementedError

    async def remove(self, version: str) -> ModelList:
        """Delete a stored version (never the serving one); the store as it is after."""
        raise NotImplementedError

    async def doctor(self) -> list[BackendInfo]:
        raise NotImplementedError

    async def bench(
        self, request: BenchmarkRequest, *, on_progress: BenchProgressFn | None = None
    ) -> BenchmarkRun:
        raise NotImplementedError

    async def engines(self) -> EngineList:
        raise NotImplementedError

    async def cameras(self) -> CameraList:
        raise NotImplementedError

    async def change_camera(self, name: str, change: CameraChange, *, add: bool) -> CameraStatus:
        """``add``: a new camera (refused when one of that name exists); else change one that exists."""
        raise NotImplementedError

    async def remove_camera(self, name: str) -> CameraList:
        """Remove the camera; the cameras left."""
        raise NotImplementedError

    async def rebuild(
        self, request: EngineRebuildRequest, *, on_progress: BenchProgressFn | None = None
    ) -> EngineRebuildResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> DeviceLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
