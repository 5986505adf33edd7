"""What a registry offer's signature covers, and which devices a staged rollout reaches.

Both sides compute these, so they live in the protocol: ``fieldtui registry serve --sign`` signs
:func:`signed_bytes`, an agent with ``[models] registry_key`` verifies the same bytes; the agent decides
from :func:`cohort_point` whether a rollout reaches it (a static file cannot answer per device).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fieldtui.protocol.store import RegistryOffer

# A signature over these bytes means "an offer of fieldtui's registry", never anything else signed with
# the same key.
SIGNED_PREFIX = b"fieldtui registry offer v1\n"


def signed_bytes(offer: RegistryOffer) -> bytes:
    """The canonical JSON of every field of ``offer`` but its signature: keys sorted, no spaces, ASCII.

    Version, sha256, download URL, size and the rollout are all covered: changing any of them after
    signing makes the signature wrong.
    """
    body = offer.model_dump(mode="json", exclude={"signature"})
    body["sha256"] = body["sha256"].strip().lower()  # as the agent reads it
    return SIGNED_PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_fingerprint(public_raw: bytes) -> str:
    """How a registry key is shown (the agent's status, keygen's output): the first 16 hex of its sha256."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def cohort_point(device_id: str, rollout_id: str) -> float:
    """A device's place in a rollout, uniform in [0, 100): the same for every poll and every registry.

    Hashed with the rollout id so each rollout picks its canaries afresh (the same few devices are not
    always first). A device takes the offer when its point is under the percent, so raising the
    percent only adds devices: none that had it is dropped.
    """
    digest = hashlib.sha256(f"{rollout_id}\n{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0
