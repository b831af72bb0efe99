"""Every input is bounded while it is read, not after: an endless file or pipe (/dev/zero) is refused
with a clear error after reading one byte more than the limit, never read into memory."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl.jws import MAX_LIST_BYTES, MAX_TOKEN_BYTES

from conftest import snapshot


class Endless(io.TextIOBase):
    """A stdin that never ends (like /dev/zero) and remembers the largest read asked of it. A read
    without a size would never return: it fails the test instead."""

    def __init__(self, byte: bytes = b"A") -> None:
        self.byte = byte
        self.largest = 0
        self.buffer = self

    def read(self, size: int | None = -1):  # type: ignore[override]
        if size is None or size < 0:
            raise AssertionError("read stdin whole")
        self.largest = max(self.largest, size)
        return self.byte * size

    def readable(self) -> bool:
        return True


def run(monkeypatch, *args: str, stdin=None):
    import contextlib

    from agentctl._cli.entry import main

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdin", stdin or io.StringIO(""))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def homes(cli, home):
    cli("keygen", "user:alice", "--role", "admin")
    cli("keygen", "agent:bot")
    return home


@pytest.mark.parametrize("args, limit, code, says", [
    (("verify", "-"), MAX_TOKEN_BYTES, 1, "denied: malformed: token is larger than 65536 bytes"),
    (("inspect", "-"), MAX_TOKEN_BYTES, 1, "token is larger than 65536 bytes"),
    (("revocations", "import", "-"), MAX_LIST_BYTES, 2, "error: revocation list stdin is larger than 8 MiB"),
    (("sign", "--as", "agent:bot", "--action", "x.y", "--resource", "r", "--data", "-"), 64 * 1024 * 1024, 2,
     "error: --data stdin is larger than 64 MiB"),
])
def test_an_endless_stdin_is_read_only_up_to_its_limit(monkeypatch, homes, args, limit, code, says):
    before = {k: v for k, v in snapshot(homes).items() if not k.startswith("audit")}
    stdin = Endless()
    rc, out, err = run(monkeypatch, *args, stdin=stdin)
    assert stdin.largest == limit + 1
    assert rc == code and says in err, err
    assert "internal error" not in err and "MemoryError" not in err
    assert {k: v for k, v in snapshot(homes).items() if not k.startswith("audit")} == before


def test_a_token_file_larger_than_a_token_is_malformed_without_reading_it_whole(monkeypatch, homes, tmp_path):
    big = tmp_path / "big.jwt"
    with open(big, "wb") as f:  # sparse: 1 GiB of zero bytes on disk costs nothing
        f.truncate(1024**3)
    rc, _, err = run(monkeypatch, "verify", str(big))
    assert rc == 1 and "denied: malformed: token is larger than 65536 bytes" in err, err


def test_a_file_at_the_limit_is_read_and_one_byte_more_is_refused(monkeypatch, homes, tmp_path):
    from agentctl._cli.common import read_bytes, read_file
    from agentctl.errors import UsageError

    f = tmp_path / "doc.txt"
    f.write_bytes(b"x" * 1000)
    assert read_file(str(f), "document", limit=1000) == "x" * 1000
    with pytest.raises(UsageError) as e:
        read_bytes(str(f), "document", limit=999)
    assert str(e.value.message).startswith(f"document {f} is larger than 999 bytes")


@pytest.mark.skipif(not Path("/dev/zero").exists() or sys.platform != "linux", reason="needs Linux's /dev/zero")
@pytest.mark.parametrize("args", [
    ("revocations", "import", "/dev/zero"),
    ("verify", "x.y.z", "--revocations", "/dev/zero"),
    ("sign", "--as", "agent:bot", "--action", "x.y", "--resource", "r", "--data", "/dev/zero"),
])
def test_dev_zero_is_a_clear_error_within_a_memory_limit(homes, args):
    """The user's side: the installed program, with 1 GiB of address space, gets a one-line usage
    error (before: MemoryError as "internal error", or the OOM killer)."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024 * 1024, resource.RLIM_INFINITY))\n"
        "from agentctl._cli.entry import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "AGENTCTL_HOME": str(homes)}
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("agentctl: error: ") and "is larger than" in p.stderr and "internal error" not in p.stderr
