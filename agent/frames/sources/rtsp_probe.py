"""An RTSP ``DESCRIBE`` of our own before FFmpeg opens a camera, to say *why* it cannot be opened.

Through OpenCV, every failed open looks the same: ``isOpened()`` is false, whether the camera is off,
the path is wrong or the password is. One DESCRIBE over a plain socket (RFC 2326 §10.2, answered by
every RTSP camera and server, no session created) tells them apart:

- 401 with credentials in the URI, after answering the challenge (Basic or Digest, RFC 2617): the camera
  refused the user name or password; 401 without any: it wants them;
- 404: no stream at that path;
- connection refused, no answer within the timeout, unknown host: the network message.

Anything else (200, or an answer we do not understand) is left to FFmpeg. Credentials go only into the
Authorization header on that socket, never into a message.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from agent.core.errors import SourceError

DEFAULT_PORT = 554
MAX_HEADER = 64 * 1024
_CHALLENGE = re.compile(r"(\w+)=(?:\"([^\"]*)\"|([^,\s]*))")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    challenges: tuple[str, ...]  # WWW-Authenticate values


def _read_answer(sock: socket.socket, deadline: float) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_HEADER:
            break
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    m = re.match(r"RTSP/\d\.\d (\d{3}) ?(.*)", lines[0] if lines else "")
    if not m:
        raise ValueError("not an RTSP answer")
    challenges = tuple(
        line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("www-authenticate:")
    )
    return Answer(int(m.group(1)), m.group(2).strip(), challenges)


def _authorization(challenges: tuple[str, ...], user: str, password: str, uri: str) -> str | None:
    """The Authorization header answering the strongest challenge we can (Digest, else Basic)."""
    for challenge in challenges:
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() != "digest":
            continue
        params = {k.lower(): (q if q else v) for k, q, v in _CHALLENGE.findall(rest)}
        if params.get("algorithm", "MD5").upper() != "MD5" or "nonce" not in params:
            continue
        realm, nonce = params.get("realm", ""), params["nonce"]

        def md5(text: str) -> str:
            return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

        ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"DESCRIBE:{uri}")
        fields = f'username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
        if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
            cnonce, nc = hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:16], "00000001"
            response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            fields += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
        else:
            response = md5(f"{ha1}:{nonce}:{ha2}")
        if "opaque" in params:
            fields += f', opaque="{params["opaque"]}"'
        return f'Digest {fields}, response="{response}"'
    if any(c.split(" ", 1)[0].lower() == "basic" for c in challenges):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def _describe(host: str, port: int, uri: str, auth: str | None, cseq: int, deadline: float) -> Answer:
    request = f"DESCRIBE {uri} RTSP/1.0\r\nCSeq: {cseq}\r\nUser-Agent: fieldtui-agent\r\nAccept: application/sdp\r\n"
    if auth:
        request += f"Authorization: {auth}\r\n"
    with socket.create_connection((host, port), timeout=max(0.01, deadline - time.monotonic())) as sock:
        sock.sendall((request + "\r\n").encode("latin-1"))
        return _read_answer(sock, deadline)


def probe(uri: str, shown: str, timeout: float) -> None:
    """Raise SourceError saying why ``uri`` cannot be opened when a DESCRIBE makes it clear; return
    otherwise (the camera answers, or answers something only FFmpeg can judge). ``shown`` is the
    redacted URI used in messages."""
    parts = urlsplit(uri)
    host, port = parts.hostname, parts.port or DEFAULT_PORT
    if not host:
        raise SourceError(f"{shown} names no host: use rtsp://HOST[:PORT]/PATH")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else ""
    where = f"{host}:{port}"
    netloc = f"[{host}]:{port}" if ":" in host else where
    target = f"rtsp://{netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + timeout
    try:
        answer = _describe(host, port, target, None, 1, deadline)
        if answer.status == 401 and user is not None:
            auth = _authorization(answer.challenges, user, password, target)
            if auth is None:
                return  # a scheme we do not speak: let FFmpeg try
            answer = _describe(host, port, target, auth, 2, deadline)
    except socket.gaierror:
        raise SourceError(
            f"could not open {shown}: the host name {host} is not known (check the address)"
        ) from None
    except ConnectionRefusedError:
        raise SourceError(
            f"could not open {shown}: nothing answers RTSP at {where} (connection refused): check the "
            "address and that the camera is on the network, and the RTSP port"
        ) from None
    except TimeoutError:
        raise SourceError(
            f"could not open {shown}: no answer from {where} within {timeout:.0f} s: check the address "
            "and that the camera is on the network"
        ) from None
    except (OSError, ValueError, UnicodeError):
        return  # reset, unreachable, not RTSP: FFmpeg's attempt and message follow
    if answer.status == 401:
        if user is None:
            raise SourceError(
                f"could not open {shown}: the camera asks for a user name and password: put them in the "
                "address, rtsp://USER:PASSWORD@HOST/PATH"
            )
        raise SourceError(f"could not open {shown}: the camera refused the user name or password")
    if answer.status == 404:
        raise SourceError(
            f"could not open {shown}: the camera has no stream at {parts.path or '/'} (404 Not Found): "
            "check the path in the camera's manual or web page"
        )
