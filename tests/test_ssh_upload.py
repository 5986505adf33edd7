"""The SFTP write size: never more than the server allows (OpenSSH's sftp-server drops the connection on
a longer write; tests/test_ssh_openssh.py pushes a model over 1 MB through the real one)."""

from __future__ import annotations

from asyncssh.sftp import SFTPLimits

from fieldtui.ssh_upload import sftp_block_size


def test_sftp_writes_stay_within_the_servers_limit():
    assert sftp_block_size(SFTPLimits(0, 261120, 261120, 0)) == 261120  # OpenSSH 9's sftp-server
    assert sftp_block_size(SFTPLimits(0, 1 << 22, 1 << 22, 0)) == 1 << 18  # more allowed: 256 KiB is enough
    assert sftp_block_size(SFTPLimits(0, 16384, 16384, 0)) == 16384  # asyncssh's value when none is sent
    assert sftp_block_size(SFTPLimits(0, 0, 0, 0)) == 16384
