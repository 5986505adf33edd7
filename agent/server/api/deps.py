"""What every route module needs: the service behind the app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agent.server.service import AgentService


def get_service(request: Request) -> AgentService:
    return request.app.state.service


Service = Annotated[AgentService, Depends(get_service)]
