"""Naming a device on the command line, and printing what a command reports."""

from __future__ import annotations

import sys

from fieldtui.config import ConsoleConfig, SavedDevice, default_record


def resolve_device(text: str, config: ConsoleConfig | None = None) -> SavedDevice:
    """A saved device by name, id, host, host:port or URL; else an unsaved record without a token."""
    config = config or ConsoleConfig()
    entry = config.find(text)
    if entry is not None:
        return entry
    return SavedDevice(device=default_record(text))


def resolve(text: str) -> SavedDevice:
    """A saved device by name, id or address, or by the SSH host or alias it was paired through."""
    config = ConsoleConfig()
    if config.find(text) is None:
        by_alias = [e for e in config.load() if e.device.ssh is not None and e.device.ssh.host == text]
        if len(by_alias) == 1:
            return by_alias[0]
    return resolve_device(text, config)


def print_json(model) -> None:
    """One JSON document on stdout: the protocol model the API returns (DESIGN.md "Command lines")."""
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")
    sys.stdout.flush()
