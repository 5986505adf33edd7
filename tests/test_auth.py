"""Token, failure brake, TLS material and `fieldtui-agent token`: what pairing relies on."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import ssl
import subprocess
import sys

import httpx
import pytest

from agent.core.home import AgentHome
from agent.server.auth import AuthPolicy, FailureThrottle, bearer_token, load_or_create_token, token_matches
from agent.server.tls import ensure_tls
from fieldtui.protocol import TokenInfo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_made_once_private_and_random(tmp_path):
    home = AgentHome(tmp_path / "h").ensure()
    token = load_or_create_token(home)
    assert len(token) >= 43  # 32 random bytes, urlsafe base64
    assert home.token_file.stat().st_mode & 0o777 == 0o600
    assert home.root.stat().st_mode & 0o777 == 0o700
    assert load_or_create_token(home) == token
    other = AgentHome(tmp_path / "other").ensure()
    assert load_or_create_token(other) != token


def test_a_loosened_token_file_is_made_private_again(tmp_path):
    home = AgentHome(tmp_path / "h").ensure()
    token = load_or_create_token(home)
    os.chmod(home.token_file, 0o644)
    assert load_or_create_token(home) == token
    assert home.token_file.stat().st_mode & 0o777 == 0o600


def test_bearer_parsing_and_comparison():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None
    assert token_matches("secret", "secret")
    assert not token_matches("secret", "secreT")
    assert not token_matches("secret", None)
    assert not token_matches("secret", "")


def test_throttle_slows_down_then_refuses_then_forgets():
    clock = Clock()
    policy = AuthPolicy(window=60, free=3, base_delay=0.25, max_delay=2.0, limit=8)
    t = FailureThrottle(policy, clock=clock)
    delays = [t.failure("10.0.0.5")[0] for _ in range(7)]
    assert delays == [0, 0, 0, 0.25, 0.5, 1.0, 2.0]  # doubling, capped
    assert t.retry_after("10.0.0.5") is None
    t.failure("10.0.0.5")  # the 8th: at the limit now
    clock.now += 10
    wait = t.retry_after("10.0.0.5")
    assert wait == pytest.approx(50.0)  # the oldest failure ages out 60 s after it happened
    assert t.retry_after("10.0.0.6") is None  # other addresses are not affected
    clock.now += 51
    assert t.retry_after("10.0.0.5") is None
    assert t.failure("10.0.0.5") == (0.0, 1)  # all forgotten
    assert t.total_failures == 9


def test_a_right_token_clears_an_address_and_memory_stays_bounded():
    clock = Clock()
    t = FailureThrottle(AuthPolicy(free=1, max_clients=50), clock=clock)
    t.failure("a")
    t.failure("a")
    t.success("a")
    assert t.failure("a") == (0.0, 1)
    for i in range(500):
        clock.now += 0.001
        t.failure(f"10.1.{i // 250}.{i % 250}")
    assert len(t._failures) <= 50


def test_tls_certificate_names_localhost_and_its_fingerprint_is_the_der_sha256(tmp_path):
    from cryptography import x509

    home = AgentHome(tmp_path / "h").ensure()
    tls = ensure_tls(home, hostname="dock-cam")
    pem = tls.cert.read_bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    assert tls.fingerprint == hashlib.sha256(der).hexdigest()
    assert len(tls.fingerprint) == 64 and tls.fingerprint == tls.fingerprint.lower()
    assert tls.key.stat().st_mode & 0o777 == 0o600
    san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert {"dock-cam", "dock-cam.local", "localhost"} <= set(san.value.get_values_for_type(x509.DNSName))
    assert ipaddress.ip_address("127.0.0.1") in san.value.get_values_for_type(x509.IPAddress)
    assert ensure_tls(home).fingerprint == tls.fingerprint  # made once, then reused


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTUI_AGENT_")}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60, env=env, cwd=REPO
    )


def test_token_command_pairs_before_the_first_serve(tmp_path):
    home = tmp_path / "fresh"
    out = _cli("token", "--home", str(home), "--json", "--tls")
    assert out.returncode == 0, out.stderr
    info = TokenInfo.model_validate_json(out.stdout)
    assert info.token == (home / "token").read_text().strip()
    assert info.device_id == (home / "device_id").read_text().strip()
    assert info.api_url.startswith("https://") and info.api_url.endswith(":8470")
    der = ssl.PEM_cert_to_DER_cert((home / "tls" / "cert.pem").read_text())
    assert info.tls_fingerprint == hashlib.sha256(der).hexdigest()
    quiet = _cli("token", "--home", str(home), "--quiet")
    assert quiet.stdout.strip() == info.token  # the same token every time
    text = _cli("token", "--home", str(home))
    assert info.token in text.stdout and "api url" in text.stdout


def test_token_command_reports_the_running_agent(agent_proc):
    out = _cli("token", "--home", str(agent_proc.home), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["api_url"] == agent_proc.url  # from the runtime file: the real port
    assert info["token"] == agent_proc.token
    health = httpx.get(f"{info['api_url']}/v1/device", headers={"Authorization": f"Bearer {info['token']}"})
    assert health.status_code == 200
    assert health.json()["id"] == info["device_id"]


def test_token_command_with_an_unusable_home_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = _cli("token", "--home", str(blocker / "home"))
    assert out.returncode == 2
    assert out.stderr.startswith("fieldtui-agent: cannot create the agent home")
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_tls_agent_serves_the_pinned_certificate(inproc_agent):
    agent = inproc_agent(tls=True)
    fingerprint = agent.service.tls.fingerprint
    port = int(agent.url.rsplit(":", 1)[1])
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    assert hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest() == fingerprint
    ctx = ssl.create_default_context(cafile=str(agent.service.tls.cert))  # self-signed: its own CA
    r = httpx.get(f"{agent.url}/v1/device", headers=agent.headers, verify=ctx)
    assert r.status_code == 200
    assert r.json()["tls_fingerprint"] == fingerprint


def test_a_new_token_never_starts_like_a_flag(monkeypatch):
    # `fieldtui add HOST --token -x...` would read the token as an option: such draws are redrawn.
    from agent.server import auth

    draws = iter(["-starts-with-a-dash", "--two", "kept-token"])
    monkeypatch.setattr(auth.secrets, "token_urlsafe", lambda n: next(draws))
    assert auth.new_token() == "kept-token"
