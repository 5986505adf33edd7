"""Optional TLS: a self-signed certificate made once, pinned by the console through its fingerprint.

No CA is involved: the console learns the fingerprint over SSH (``fieldtui-agent token --json``) or
from the mDNS TXT record and pins it, so the certificate only has to stay the same. It is valid for
ten years and names the hostname, ``localhost`` and ``127.0.0.1``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from agent.core.errors import AgentError
from agent.core.home import AgentHome
from fieldtui.protocol.files import atomic_write


@dataclass(frozen=True)
class TlsMaterial:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the DER certificate, lowercase hex without colons


def fingerprint_of(cert_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _make_certificate(hostname: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())  # fast to make on a Pi, small handshake
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "fieldtui-agent"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fieldtui-agent"),
        ]
    )
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    if hostname and hostname != "localhost":
        sans.insert(0, x509.DNSName(hostname))
        if "." not in hostname:
            sans.insert(1, x509.DNSName(f"{hostname}.local"))  # the mDNS name the console may use
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a laptop clock a little behind
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_tls(home: AgentHome, hostname: str | None = None) -> TlsMaterial:
    """The home's certificate and key, made now if missing (key first, so a crash cannot pair a
    new certificate with a key that was never written)."""
    cert_path, key_path = home.tls_dir / "cert.pem", home.tls_dir / "key.pem"
    try:
        if cert_path.exists() and key_path.exists():
            return TlsMaterial(cert_path, key_path, fingerprint_of(cert_path.read_bytes()))
        home.tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        cert_pem, key_pem = _make_certificate(hostname or socket.gethostname())
        atomic_write(key_path, key_pem, mode=0o600)
        atomic_write(cert_path, cert_pem, mode=0o600)
    except ValueError as err:
        raise AgentError(
            f"the TLS certificate in {home.tls_dir} is unreadable ({err}); "
            "delete that directory to make a new one, then pair the console again",
            status=500,
        ) from None
    return TlsMaterial(cert_path, key_path, fingerprint_of(cert_pem))


def existing_fingerprint(home: AgentHome) -> str | None:
    """The fingerprint of the home's certificate if one was made, without making one."""
    cert_path = home.tls_dir / "cert.pem"
    try:
        return fingerprint_of(cert_path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
