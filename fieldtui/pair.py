"""Pairing over SSH: read the agent's token and TLS pin with ``fieldtui-agent token --json``.

SSH is the root of trust: the host key is checked against known_hosts (an unknown one must be accepted
explicitly), so the token and the certificate fingerprint read over it can be trusted, and nothing is
typed by hand. The device's HTTP address is the one SSH reached (``~/.ssh/config``'s ``HostName``),
with the port and scheme the agent reports.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from fieldtui.protocol import DEFAULT_PORT, DeviceRecord, SSHEndpoint, TokenInfo
from fieldtui.ssh import RemoteCommandFailed, SSHSession


async def pair_over_ssh(
    endpoint: SSHEndpoint, *, accept_new: bool = False, name: str | None = None
) -> tuple[DeviceRecord, str]:
    """The device's record (with its TLS pin and how to reach it over SSH) and its API token.

    If the SSH user may not read the agent home (the systemd service's), ``token`` is tried again
    through ``sudo -n``; when that works the record's endpoint says ``sudo=True`` so every later agent
    command runs the same way. ``endpoint.sudo`` forces it from the start (``fieldtui pair --sudo``)."""
    async with await SSHSession.connect(endpoint, accept_new=accept_new) as ssh:
        try:
            out = await ssh.agent_json("token")
        except RemoteCommandFailed as err:
            if endpoint.sudo or not permission_denied(err):
                raise
            endpoint = ssh.endpoint = endpoint.model_copy(update={"sudo": True})
            out = await ssh.agent_json("token")
        address = ssh.address
    try:
        info = TokenInfo.model_validate_json(out)
    except ValueError:
        raise RemoteCommandFailed(
            "remote `fieldtui-agent token --json` did not print a token document: "
            "is the device's fieldtui-agent too old for this console?",
            command="fieldtui-agent token --json",
            exit_status=0,
            stderr="",
        ) from None
    url = urlsplit(info.api_url)
    addresses = [address] + ([url.hostname] if url.hostname and url.hostname != address else [])
    record = DeviceRecord(
        id=info.device_id,
        name=name or info.name,
        host=address,
        port=url.port or DEFAULT_PORT,
        addresses=addresses,
        tls=url.scheme == "https",
        tls_fingerprint=info.tls_fingerprint,
        origin=["ssh"],
        last_seen=time.time(),
        ssh=endpoint,
    )
    return record, info.token


def permission_denied(err: RemoteCommandFailed) -> bool:
    """The agent could not read its home as this user: a Python ``PermissionError`` or a shell's
    "Permission denied" on its stderr (exit 127/126 mean no agent at all, not a permission)."""
    text = err.stderr.lower()
    return err.exit_status not in (0, 126, 127) and ("permission denied" in text or "permissionerror" in text)
