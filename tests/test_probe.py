"""``fieldtui discover --probe``: finding agents by sweeping an address range, for networks that block mDNS.

Real agents on 127.0.0.2, 127.0.0.3 and 127.0.0.4 (HTTPS), all on one port P, found by probing a
loopback /29 with ``--port P``; and, where the test may make one (root, iproute2), an agent on the
default port in a network namespace behind a veth pair, with addresses that have no host, as on a LAN.
Nothing is probed but loopback and the namespace this test makes.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fieldtui.config import ConsoleConfig
from fieldtui.discovery import merge, merge_probed
from fieldtui.probe import MAX_ADDRESSES, Prober, addresses, parse_ports, parse_range
from fieldtui.protocol import DeviceRecord, DiscoveryResult, HealthReport
from screens.app import FieldtuiApp
from tests.conftest import REPO, _clean_env, _terminate, wait_for_runtime
from tests.console_cli import ok_json, run
from tests.loopback_agents import common_port, device_id, start_agents

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
TLS_HOST = "127.0.0.4"


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path):
    port = common_port(HOSTS)
    with start_agents(tmp_path_factory.mktemp("probe"), tiny_model, HOSTS, port, tls=[TLS_HOST]) as running:
        yield port, {host: device_id(a) for host, a in zip(HOSTS, running, strict=True)}, running


# --- guard rails ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--probe", "💥"], "--probe 💥: not an address range; give one like 10.0.5.0/24"),
        (
            ["--probe", "0.0.0.0/0"],
            "--probe 0.0.0.0/0: 4,294,967,296 addresses is too many to probe, even with",
        ),
        (
            ["--probe", "10.0.0.0/8"],
            "--probe 10.0.0.0/8: 16,777,216 addresses is too many to probe, even with",
        ),
        (["--probe", "10.0.0.0/8", "--force"], "too many to probe, even with --force; at most a /16"),
        (
            ["--probe", "10.0.0.0/21"],
            "--probe 10.0.0.0/21: 2,048 addresses is more than a /22 (1,024 addresses)",
        ),
        (["--probe", "fd00::/64"], "is too many to probe, even with --force; at most a /112"),
        (
            ["--probe", "fd00::/117"],
            "more than a /118 (1,024 addresses); name a smaller range, or add --force",
        ),
        (["--probe", "224.0.0.0/24"], "multicast, reserved or unspecified addresses hold no agent"),
        (["--probe", "fe80::/120"], "IPv6 link-local needs an interface scope"),
        (["--probe", "10.0.5.0/24", "--port", "0"], "--port '0': give a port from 1 to 65535"),
        (["--probe", "10.0.5.0/24", "--port", "http"], "--port 'http': give a port from 1 to 65535"),
        (["--port", "9000"], "--port and --force go with --probe CIDR"),
        (["--probe", "10.0.5.0/24", "--probe", "\x1b[2J"], "--probe '\\x1b[2J': not an address range"),
    ],
)
def test_a_hostile_range_is_one_clear_line_and_probes_nothing(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(tmp_path / "console"))

    async def never(*_a, **_k):
        raise AssertionError("a refused range must not be probed")

    monkeypatch.setattr(Prober, "run", never)
    monkeypatch.setattr("fieldtui.discovery.discover", never)  # nor browsed: the command stops first
    code, out, err = run(capsys, "discover", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("fieldtui: ") and message in err
    assert not (tmp_path / "console").exists()  # nothing written either


def test_ranges_within_the_limits_are_accepted_as_given():
    assert str(parse_range("10.0.5.7/24")) == "10.0.5.0/24"  # a technician types their own address
    assert str(parse_range(" 192.168.1.40 ")) == "192.168.1.40/32"
    assert str(parse_range("10.0.4.0/22")).endswith("/22")  # the largest without --force
    assert parse_range("10.0.0.0/16", force=True).num_addresses == 65536
    assert str(parse_range("fd00::/118")) == "fd00::/118"
    assert parse_ports(["9000", 8470, "9000"]) == [8470, 9000]  # the default first, each once
    hosts = addresses([parse_range("10.0.5.0/30"), parse_range("10.0.5.2"), parse_range("10.0.5.9/31")])
    assert hosts == ["10.0.5.1", "10.0.5.2", "10.0.5.8", "10.0.5.9"]  # no network/broadcast, no repeats
    assert len(addresses([parse_range("10.0.4.0/22")])) == MAX_ADDRESSES - 2


# --- merging -------------------------------------------------------------------------------------


def test_a_device_found_by_mdns_and_by_probe_is_one_record_marked_probe():
    ident = "c" * 32
    mdns = DeviceRecord(id=ident, name="gate-3", host="10.0.4.17", addresses=["10.0.4.17"], model="v7")
    mdns = mdns.model_copy(update={"origin": ["mdns"]})
    probed = DeviceRecord(
        id=ident, name="gate-3", host="10.0.5.17", addresses=["10.0.5.17"], origin=["probe"]
    )
    other = DeviceRecord(
        id="d" * 32, name="dock-1", host="10.0.5.30", addresses=["10.0.5.30"], origin=["probe"]
    )
    saved = DeviceRecord(id=ident, name="Gate 3 (north)", host="10.0.3.3", origin=["manual"])
    [dock, gate] = merge(merge_probed([mdns], [probed, other]), [saved])
    assert gate.id == ident and gate.name == "Gate 3 (north)" and gate.model == "v7"
    assert gate.origin == ["manual", "saved", "mdns", "probe"] and not gate.lost
    assert gate.addresses == ["10.0.4.17", "10.0.5.17"]
    assert dock.origin == ["probe"] and dock.id == "d" * 32


# --- real agents on loopback ---------------------------------------------------------------------


def test_health_names_the_device_it_comes_from(agents):
    import httpx

    port, ids, _ = agents
    resp = httpx.get(f"http://127.0.0.2:{port}/v1/health", timeout=5, trust_env=False)  # no token: public
    health = HealthReport.model_validate_json(resp.content)
    assert health.id == ids["127.0.0.2"] and health.name == "probe-0"


def test_discover_probe_finds_the_agents_and_merges_a_saved_one(agents, tmp_path, capsys, monkeypatch):
    port, ids, running = agents
    config_dir = tmp_path / "console"
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(config_dir))
    # Saved at an old address: the probe finds it elsewhere, and it stays one record (same id).
    old = DeviceRecord(id=ids["127.0.0.3"], name="gate-3", host="127.0.0.9", port=port, origin=["manual"])
    ConsoleConfig(config_dir).save_device(old, running[1].token)
    doc = ok_json(
        capsys, "discover", "--probe", "127.0.0.0/29", "--port", str(port), "--json", "--timeout", "0.3"
    )
    result = DiscoveryResult.model_validate(doc)
    ours = {d.id: d for d in result.devices if d.id in ids.values()}
    assert len(ours) == 3 and [d.id for d in result.devices].count(ids["127.0.0.3"]) == 1
    for host, ident in ids.items():
        d = ours[ident]
        assert d.host == host and d.port == port and "probe" in d.origin and not d.lost
        assert d.tls == (host == TLS_HOST) and d.version
    gate = ours[ids["127.0.0.3"]]
    assert gate.name == "gate-3" and gate.origin == ["manual", "saved", "probe"]
    assert ours[ids[TLS_HOST]].tls_fingerprint is None  # an unverified answer pins nothing
    assert ours[ids["127.0.0.2"]].name == "probe-0" and ours[ids["127.0.0.2"]].origin == ["probe"]
    assert result.hints[0].startswith(f"Probe of 127.0.0.0/29 on port 8470, {port}: 6 addresses in")
    # The saved device learnt its new address, and was not marked as seen over mDNS.
    [entry] = ConsoleConfig(config_dir).load()
    assert entry.device.host == "127.0.0.3" and "mdns" not in entry.device.origin

    code, out, err = run(
        capsys, "discover", "--probe", "127.0.0.2/31", "--port", str(port), "--timeout", "0.3"
    )
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("probe-0 "))
    assert f"127.0.0.2:{port}" in row and row.split()[-2:] == ["online", "probe"]


async def test_the_sweep_keeps_to_its_concurrency_limit(agents):
    port, ids, _ = agents
    prober = Prober(concurrency=3, connect_timeout=0.5)
    started = time.monotonic()
    report = await prober.run([parse_range("127.0.0.0/28")], [port])
    assert {d.id for d in report.devices} >= set(ids.values())
    assert report.probed == 14 and 1 <= report.peak_open <= 3
    assert report.elapsed_s <= time.monotonic() - started
    assert report.summary().startswith(f"probe of 127.0.0.0/28 on port {port}: 14 addresses in ")


async def test_ipv6_loopback_is_probed_by_its_literal(agents):
    port, _, _ = agents
    report = await Prober(concurrency=2).run([parse_range("::1/128")], [port])
    assert report.probed == 1 and report.devices == []  # no agent listens on ::1: nothing, no error


# --- the device list's "probe subnet" action (Textual pilot) ------------------------------------


async def test_the_device_list_probes_a_subnet_and_lists_what_answers(agents, tmp_path):
    from textual.widgets import Input, Static

    from fieldtui.fleet import Fleet
    from fieldtui.probe import own_subnets
    from screens.devices import DevicesScreen
    from screens.probe_dialog import ProbeDialog
    from tests.tui_pilot import SIZE, until

    port, ids, _ = agents
    app = FieldtuiApp(Fleet(ConsoleConfig(tmp_path / "console"), mdns=False))
    async with app.run_test(size=SIZE) as pilot:
        devices = app.screen
        assert isinstance(devices, DevicesScreen) and devices.rows == {}
        await pilot.press("s")
        await until(pilot, "the probe dialog", lambda: isinstance(app.screen, ProbeDialog))
        dialog = app.screen
        ranges, ports = dialog.query_one("#ranges", Input), dialog.query_one("#ports", Input)
        subnets = own_subnets()  # proposed, never probed here: only loopback is
        assert ranges.value == (str(subnets[0].network) if subnets else "")
        for s in subnets:
            assert str(s.network) in str(dialog.query_one("#subnets", Static).render())

        ranges.value = "10.0.0.0/21"  # too large without --force: refused in the dialog, nothing sent
        ports.value = str(port)
        ports.focus()
        await pilot.press("enter")
        error = str(dialog.query_one("#error", Static).render())
        assert app.screen is dialog and "more than a /22" in error and "--force" in error

        ranges.value = "127.0.0.0/29"
        ports.focus()
        await pilot.press("enter")
        await until(pilot, "the agents found by probe", lambda: set(ids.values()) <= set(devices.rows), 30)
        assert app.screen is devices
        for host, ident in ids.items():
            row = devices.rows[ident]
            assert row.record.host == host and "probe" in row.record.origin
            assert row.cells(0.0)[1].plain == f"{host}:{port} (probe)"
        # the list then polls them like any other device: health is public, no token needed
        await until(pilot, "health", lambda: devices.rows[ids["127.0.0.2"]].probe is not None, 30)


# --- a real LAN segment: an agent in a network namespace this test makes -------------------------


@pytest.fixture
def netns_agent(tmp_path: Path, tiny_model: Path):
    """An agent on port 8470 at .2 of a random 198.18.x.y/29 (benchmark space) inside a namespace this
    test creates, joined to this one by a veth pair (.1 here); .3 to .6 have no host, as on a LAN."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (`ip`)")
    tag = secrets.token_hex(3)
    ns, here, there = f"ftprobe-{tag}", f"ftp{tag}h", f"ftp{tag}d"
    net = ipaddress.ip_network(f"198.18.{secrets.randbelow(256)}.{8 * secrets.randbelow(32)}/29")
    made: list[list[str]] = []

    def ip(*args: str) -> None:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            raise OSError(f"ip {' '.join(args)}: {proc.stderr.strip()}")

    try:
        ip("netns", "add", ns)
        made.append(["netns", "del", ns])
        ip("link", "add", here, "type", "veth", "peer", "name", there)
        made.append(["link", "del", here])
        ip("link", "set", there, "netns", ns)
        ip("addr", "add", f"{net[1]}/29", "dev", here)
        ip("link", "set", here, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{net[2]}/29", "dev", there)
        ip("netns", "exec", ns, "ip", "link", "set", there, "up")
    except OSError as err:
        for args in reversed(made):
            subprocess.run(["ip", *args], capture_output=True, timeout=10)
        pytest.skip(f"cannot make a network namespace here: {err}")
    home, log = tmp_path / "netns-agent", tmp_path / "netns-agent.stderr"
    args = ["ip", "netns", "exec", ns, sys.executable, "-m", "agent", "serve", "--home", str(home)]
    args += [
        "--host",
        str(net[2]),
        "--port",
        "8470",
        "--no-mdns",
        "--model",
        str(tiny_model),
        "--name",
        "in-ns",
    ]
    with open(log, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=_clean_env(None), cwd=REPO)
    try:
        wait_for_runtime(home, proc, log)
        yield net, (home / "device_id").read_text().strip()
    finally:
        _terminate(proc)
        for args in reversed(made):
            subprocess.run(["ip", *args], capture_output=True, timeout=10)


def test_a_probe_finds_an_agent_across_a_veth_link_on_the_default_port(
    netns_agent, capsys, monkeypatch, tmp_path
):
    net, ident = netns_agent
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(tmp_path / "console"))
    doc = ok_json(capsys, "discover", "--probe", str(net), "--json", "--timeout", "0.3")
    result = DiscoveryResult.model_validate(doc)
    assert all(ipaddress.ip_address(d.host) in net for d in result.devices if "probe" in d.origin)
    [found] = [d for d in result.devices if d.id == ident]
    assert (found.host, found.port, found.origin, found.name) == (str(net[2]), 8470, ["probe"], "in-ns")
    # .3 to .6 never answer (no host): they cost the connect timeout, and the sweep still ends
    assert result.hints[0].startswith(f"Probe of {net} on port 8470: 6 addresses in ")
