"""Pull mode's check of a registry offer before anything is downloaded: its signature, then its rollout.

With ``[models] registry_key`` set, an offer is taken only when it carries an Ed25519 signature by that
key over :func:`fieldtui.protocol.offers.signed_bytes` (version, sha256, URL, size and rollout): an
unsigned offer or one changed after signing is refused. Without a key, offers are taken unsigned - the
status says so. A staged rollout (``rollout: {id, percent}``) reaches the device only when the device's
cohort point falls under the percent.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fieldtui.protocol import RegistryOffer
from fieldtui.protocol.offers import cohort_point, key_fingerprint, signed_bytes


@dataclass(frozen=True)
class OfferVerdict:
    """Whether to go on with an offer; when not, why (``refused``: a bad signature, worth a history row
    and a warning; otherwise the device is simply outside the rollout's cohort for now)."""

    take: bool
    why: str | None = None
    refused: bool = False


class OfferCheck:
    """Checks offers for one device against an optional registry public key (raw 32 bytes)."""

    def __init__(self, device_id: str, public_key: bytes | None) -> None:
        self.device_id = device_id
        self._key = None
        self.fingerprint: str | None = None
        if public_key is not None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            self._key = Ed25519PublicKey.from_public_bytes(public_key)
            self.fingerprint = key_fingerprint(public_key)

    @property
    def signed(self) -> bool:
        return self._key is not None

    def __call__(self, offer: RegistryOffer) -> OfferVerdict:
        why = self.signature_problem(offer)
        if why is not None:
            return OfferVerdict(False, why, refused=True)
        rollout = offer.rollout
        if rollout is not None and rollout.percent < 100.0:
            point = cohort_point(self.device_id, rollout.id)
            if point >= rollout.percent:
                return OfferVerdict(
                    False,
                    f"{offer.version} is in rollout {rollout.id!r} to {rollout.percent:g}% of devices; "
                    f"this device comes at {point:.1f}%, so it waits",
                )
        return OfferVerdict(True)

    def signature_problem(self, offer: RegistryOffer) -> str | None:
        """None when the offer may be taken as far as its signature goes; else the reason it may not."""
        if self._key is None:
            return None
        from cryptography.exceptions import InvalidSignature

        if not offer.signature:
            return (
                f"offer of {offer.version} is unsigned but [models] registry_key requires a signature "
                f"by key {self.fingerprint}; sign it with `fieldtui registry serve --sign KEY`"
            )
        try:
            signature = base64.b64decode(offer.signature, validate=True)
            self._key.verify(signature, signed_bytes(offer))
        except (binascii.Error, ValueError, InvalidSignature):
            return (
                f"offer of {offer.version} (sha256 {offer.sha256[:12]}…) has a signature that does not "
                f"match key {self.fingerprint}: signed by another key or changed after signing; not "
                "downloaded"
            )
        return None
