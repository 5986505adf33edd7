"""Staged rollouts and signed offers in pull mode: the cohort a rollout reaches at each percent, the
signature an agent with ``[models] registry_key`` demands, and real agents on 127.0.0.1 pulling from
``fieldtui registry serve`` (the RegistryServer) and a plain static web server."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest
from textual.widgets import Static

from agent.core.config import ConfigError
from agent.store.offer_check import OfferCheck
from agent.store.settings import ModelSettings
from fieldtui.errors import ConsoleError
from fieldtui.protocol import ModelList, RegistryOffer, RegistryRollout
from fieldtui.protocol.offers import cohort_point
from fieldtui.registry import ModelFolder
from fieldtui.registry_signing import OfferSigner, keygen
from screens.dashboard import DashboardScreen
from screens.models import ModelsScreen
from tests import storemodels as sm
from tests.console_cli import fail_line, run
from tests.storeclient import listing, wait_for
from tests.test_registry import age, pulling_agent, registry, static_site
from tests.tui_pilot import SIZE, app_on, until

DEVICES = [f"dev-{i:03d}-{(i * 7919) % 10007:05d}" for i in range(100)]


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "registry"
    age(sm.detector(path / "v1.onnx", seed=1), 60)
    sm.detector(path / "v2.onnx", seed=2)
    return path


@pytest.fixture
def keys(tmp_path) -> dict[str, tuple[Path, Path]]:
    """Two key pairs, as `fieldtui registry keygen` writes them: ours and someone else's."""
    return {name: keygen(tmp_path / f"keys-{name}") for name in ("ours", "other")}


def public_line(pub: Path) -> str:
    return pub.read_text().strip()


def public_raw(pub: Path) -> bytes:
    return base64.b64decode(public_line(pub))


def takers(folder: ModelFolder) -> set[str]:
    """The simulated devices that take the folder's current offer (each decides with the agent's check)."""
    return {d for d in DEVICES if OfferCheck(d, None)(folder.offer(d)).take}


def test_a_rollout_reaches_a_growing_cohort_that_matches_the_percent(folder):
    models = ModelFolder(folder)
    (folder / "latest").write_text("v1\n")
    assert takers(models) == set(DEVICES) and models.offer("x").version == "v1"

    assert "v2 offered to 5% of devices" in models.set_rollout("v2", 5)
    offer = models.offer(DEVICES[0])
    assert offer.version == "v2" and offer.rollout == RegistryRollout(id="v2", percent=5)
    five = takers(models)
    models.set_rollout("v2", 25)
    assert models.offer("x").rollout.id == "v2"  # the id stays: every device keeps its place
    twenty_five = takers(models)
    assert "ended" in models.set_rollout("v2", 100)
    assert models.offer("x").rollout is None and (folder / "latest").read_text() == "v2\n"
    everyone = takers(models)
    assert five < twenty_five < everyone == set(DEVICES)
    assert abs(len(five) - 5) <= 5 and abs(len(twenty_five) - 25) <= 5

    # every step of a finer sweep only adds devices; a new rollout draws its canaries afresh
    previous: set[str] = set()
    for percent in range(0, 101, 5):
        models.set_rollout("v2", percent, rollout_id="v2-again")
        now = takers(models)
        assert previous <= now
        previous = now
    assert previous == set(DEVICES)
    again = {d for d in DEVICES if cohort_point(d, "v2-again") < 5}
    assert again != five

    # another version's rollout replaces this one, and says so
    models.set_rollout("v2", 50)
    assert "replaces the rollout of v2 at 50%" in models.set_rollout("v1", 10)
    # a device pinned by name gets its own version whatever the rollout says
    models.set_rollout("v2", 0)
    (folder / "devices").mkdir()
    (folder / "devices" / DEVICES[3]).write_text("v1")
    assert models.offer(DEVICES[3]).rollout is None and models.offer(DEVICES[3]).version == "v1"
    assert takers(models) == {DEVICES[3]}


def test_rollout_refuses_what_it_cannot_do_and_changes_nothing(folder):
    models = ModelFolder(folder)
    models.set_rollout("v2", 10)
    before = (folder / "rollout.json").read_bytes()
    with pytest.raises(ConsoleError, match="no model file for version 'v9'"):
        models.set_rollout("v9", 10)
    with pytest.raises(ConsoleError, match="out of range"):
        models.set_rollout("v2", 101)
    with pytest.raises(ConsoleError, match="rollout id"):
        models.set_rollout("v2", 20, rollout_id="../x")
    assert (folder / "rollout.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["rollout.json", "v1.onnx", "v2.onnx"]


def test_a_signed_offer_is_taken_and_a_tampered_one_refused(folder, keys):
    signer = OfferSigner(keys["ours"][0])
    models = ModelFolder(folder, signer)
    models.set_rollout("v2", 50)
    offer = models.offer("dev")
    assert offer.signature and offer.rollout is not None
    check = OfferCheck("dev", public_raw(keys["ours"][1]))
    assert check.signature_problem(offer) is None
    assert check.signature_problem(RegistryOffer.model_validate_json(offer.model_dump_json())) is None
    # the agent reads sha256 case-blind, so the signature covers it so too
    assert check.signature_problem(offer.model_copy(update={"sha256": offer.sha256.upper()})) is None

    tampered = {
        "sha256": offer.model_copy(update={"sha256": "0" * 64}),
        "version": offer.model_copy(update={"version": "v1"}),
        "rollout": offer.model_copy(update={"rollout": RegistryRollout(id="v2", percent=100)}),
        "url": offer.model_copy(update={"download_url": "http://elsewhere/v2.onnx"}),
        "garbled": offer.model_copy(update={"signature": "not base64!"}),
        "other key": OfferSigner(keys["other"][0]).sign(offer),
    }
    for what, bad in tampered.items():
        why = check.signature_problem(bad)
        assert why is not None and "does not match key" in why, what
        verdict = check(bad)
        assert not verdict.take and verdict.refused, what
    unsigned = offer.model_copy(update={"signature": None})
    assert "unsigned" in check.signature_problem(unsigned)
    # without a key, unsigned offers pass (the agent's status says so)
    assert OfferCheck("dev", None).signature_problem(unsigned) is None


def test_registry_key_in_the_config(keys, tmp_path):
    pub = keys["ours"][1]
    raw = public_raw(pub)
    assert ModelSettings.from_section({"registry_key": public_line(pub)}).registry_key == raw
    assert ModelSettings.from_section({"registry_key": str(pub)}).registry_key == raw
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pem = tmp_path / "key.pem"
    pem.write_bytes(
        Ed25519PublicKey.from_public_bytes(raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert ModelSettings.from_section({"registry_key": str(pem)}).registry_key == raw
    for bad, message in [
        ("relative/key.pub", "is neither"),
        (str(tmp_path / "missing.pub"), "cannot read"),
        (str(keys["ours"][0]), "holds no Ed25519 public key"),
        (base64.b64encode(b"short").decode(), "is neither"),
        (42, "must be the base64 public key"),
    ]:
        with pytest.raises(ConfigError, match=message) as err:
            ModelSettings.from_section({"registry_key": bad})
        assert "\n" not in str(err.value)


def history_of(models: ModelList, action: str) -> list:
    return [h for h in models.history if h.action == action]


def test_an_agent_with_the_key_applies_a_signed_offer_and_refuses_a_wrongly_signed_one(
    folder, keys, inproc_agent, tmp_path
):
    (folder / "latest").write_text("v1")
    models = ModelFolder(folder, OfferSigner(keys["ours"][0]))
    with registry(models) as url:
        agent = pulling_agent(inproc_agent, tmp_path, url, registry_key=str(keys["ours"][1]))
        with agent.client() as c:
            first = wait_for(lambda: (m := listing(c)).serving.version == "v1" and m)
            assert first.pull.signed and first.pull.key == OfferSigner(keys["ours"][0]).fingerprint
            wait_for(lambda: listing(c).history[0].outcome == "good")
            store = agent.service.models.store
            before = sorted(p.name for p in store.root.rglob("*"))

            # the registry (or whoever stands in its place) now offers v2 under another key
            models.signer = OfferSigner(keys["other"][0])
            (folder / "latest").write_text("v2")
            poller = agent.service.models.poller
            wait_for(lambda: (poller.last or "").startswith("refused: offer of v2"))
            after = listing(c)
            assert after.serving.version == "v1" and [v.version for v in after.versions] == ["v1"]
            assert sorted(p.name for p in store.root.rglob("*")) == before  # nothing downloaded
            refused = history_of(after, "pull")
            assert len(refused) == 1 and refused[0].outcome == "refused"
            assert refused[0].version == "v2" and "does not match key" in refused[0].reason
            assert "pull      from" in "\n".join(after.summary_lines())
            logs = c.get("/v1/logs").json()["lines"]
            assert any(
                "refused an offer" in line["message"] and "does not match key" in line["message"]
                for line in logs
            )
            wait_for(lambda: poller.last and poller.last.startswith("refused"), timeout=5)
            assert len(history_of(listing(c), "pull")) == 1  # once per offer, not every poll


def test_an_agent_with_a_key_refuses_an_unsigned_static_offer(folder, keys, inproc_agent, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "v2.onnx").write_bytes((folder / "v2.onnx").read_bytes())
    offer = {"version": "v2", "download_url": "v2.onnx", "sha256": sm.sha256(folder / "v2.onnx")}
    with static_site(site, offer) as url:
        agent = pulling_agent(inproc_agent, tmp_path, url, registry_key=public_line(keys["ours"][1]))
        poller = agent.service.models.poller
        wait_for(lambda: (poller.last or "").startswith("refused"))
        assert "unsigned but [models] registry_key requires a signature" in poller.last
        with agent.client() as c:
            models = listing(c)
        assert models.versions == [] and models.serving.version is None
        assert history_of(models, "pull")[0].outcome == "refused"


def test_a_static_site_serves_a_signed_offer_that_registry_offer_wrote(
    folder, keys, inproc_agent, tmp_path, capsys
):
    ModelFolder(folder).set_rollout("v2", 100)
    code, text, _ = run(capsys, "registry", "offer", str(folder), "--sign", str(keys["ours"][0]))
    assert code == 0
    offer = RegistryOffer.model_validate_json(text)
    assert offer.version == "v2" and offer.signature and '"rollout"' not in text
    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    (site / "models" / "v2.onnx").write_bytes((folder / "v2.onnx").read_bytes())
    with static_site(site, offer.model_dump(exclude_none=True)) as url:
        agent = pulling_agent(inproc_agent, tmp_path, url, registry_key=public_line(keys["ours"][1]))
        with agent.client() as c:
            wait_for(lambda: listing(c).serving.version == "v2")
    assert "no model to offer" in fail_line(capsys, "registry", "offer", str(tmp_path / "site"))


def test_an_agent_outside_the_cohort_waits_and_joins_when_the_percent_rises(folder, inproc_agent, tmp_path):
    (folder / "latest").write_text("v1")
    models = ModelFolder(folder)
    with registry(models) as url:
        agent = pulling_agent(inproc_agent, tmp_path, url)
        point = cohort_point(agent.service.device_id, "v2")
        with agent.client() as c:
            first = wait_for(lambda: (m := listing(c)).serving.version == "v1" and m)
            assert not first.pull.signed and "UNSIGNED offers accepted" in "\n".join(first.summary_lines())
            models.set_rollout("v2", point / 2)  # under this device's point: not yet
            poller = agent.service.models.poller
            wait_for(lambda: "so it waits" in (poller.last or ""))
            assert listing(c).serving.version == "v1" and not agent.service.models.store.has("v2")
            models.set_rollout("v2", min(100.0, point + 0.5))  # now it is in
            wait_for(lambda: listing(c).serving.version == "v2")


def test_keygen_rollout_and_serve_sign_on_the_command_line(folder, tmp_path, capsys):
    out = tmp_path / "k"
    code, made, _ = run(capsys, "registry", "keygen", "--out", str(out))
    assert code == 0
    pub = out / "registry-signing.pub"
    assert f'registry_key = "{public_line(pub)}"' in made
    assert (out / "registry-signing.key").stat().st_mode & 0o777 == 0o600
    assert "exists; move it away" in fail_line(capsys, "registry", "keygen", "--out", str(out))

    code, staged, _ = run(capsys, "registry", "rollout", str(folder), "--version", "v2", "--percent", "5")
    assert code == 0 and "5% of devices" in staged
    signer = OfferSigner(out / "registry-signing.key")
    offer = ModelFolder(folder, signer).offer("d")
    assert offer.rollout == RegistryRollout(id="v2", percent=5)
    assert OfferCheck("d", public_raw(pub)).signature_problem(offer) is None
    with pytest.raises(SystemExit):
        run(capsys, "registry", "rollout", str(folder), "--version", "v2", "--percent", "x")
    assert "not a percent" in capsys.readouterr().err
    assert "not an unencrypted PEM private key" in fail_line(
        capsys, "registry", "serve", str(folder), "--sign", str(pub), "--port", "0"
    )


async def test_the_models_screen_says_where_the_device_pulls_from_and_whether_unsigned(
    keys, inproc_agent, tmp_path
):
    with socket.socket() as sock:  # a loopback port nothing listens on: the registry is down
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    agent = pulling_agent(inproc_agent, tmp_path, url, registry_poll_s=60)
    app = app_on(agent, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("m")
        await until(pilot, "the models screen", lambda: isinstance(app.screen, ModelsScreen))
        screen = app.screen
        await until(pilot, "the listing", lambda: screen.listing is not None)
        text = str(screen.query_one("#serving", Static).render())
        assert f"pulls from {url}, UNSIGNED offers accepted (no registry_key)" in text
    assert app._exception is None
