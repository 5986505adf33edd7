"""Signed registry offers: ``fieldtui registry keygen`` makes an Ed25519 key pair, ``registry serve
--sign KEY`` signs every offer with it, and agents configured with the public key
(``[models] registry_key``) take only offers that carry a good signature.

The private key is a PKCS#8 PEM file readable only by its owner; the public key is one line of base64
(the raw 32 bytes), so it can be pasted into the agent's config.toml as it is, or referred to by path.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from fieldtui.errors import ConsoleError
from fieldtui.protocol import RegistryOffer
from fieldtui.protocol.offers import key_fingerprint, signed_bytes

PRIVATE_NAME = "registry-signing.key"
PUBLIC_NAME = "registry-signing.pub"


def keygen(out: Path) -> tuple[Path, Path]:
    """Write a new key pair into ``out``; refuses to overwrite either file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = out / PRIVATE_NAME, out / PUBLIC_NAME
    for path in (private, public):
        if path.exists():
            raise ConsoleError(f"{path} exists; move it away or choose another --out folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConsoleError(f"cannot create {out}: {err.strerror}") from None
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_text(base64.b64encode(raw).decode() + "\n")
    return private, public


class OfferSigner:
    """Signs offers with an Ed25519 private key read from a PEM file."""

    def __init__(self, path: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as err:
            raise ConsoleError(f"cannot read the signing key {path}: {err.strerror}") from None
        except (ValueError, TypeError):
            raise ConsoleError(
                f"{path} is not an unencrypted PEM private key; make one with `fieldtui registry keygen`"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConsoleError(f"{path} is not an Ed25519 key; make one with `fieldtui registry keygen`")
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_b64 = base64.b64encode(raw).decode()
        self.fingerprint = key_fingerprint(raw)

    def sign(self, offer: RegistryOffer) -> RegistryOffer:
        """``offer`` with its signature (over every other field) set."""
        unsigned = offer.model_copy(update={"signature": None})
        signature = self._key.sign(signed_bytes(unsigned))
        return unsigned.model_copy(update={"signature": base64.b64encode(signature).decode()})
