"""An unchanged source costs one conditional request and nothing else: nothing is verified again and
no file of the home is written; the state is written only when it changes (new validators, an error
to clear). Against the real local HTTPS server of test_sync."""

from __future__ import annotations

import pytest

from test_sync import Fleet, Server, statuses

pytest.importorskip("cryptography.x509", reason="the HTTPS tests make a certificate with the cryptography package")


@pytest.fixture
def fleet(tmp_path):
    server = Server(tmp_path)
    yield Fleet(tmp_path, server)
    server.stop()


def _files(path):
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(path.rglob("*")) if p.is_file()}


def _state(fleet) -> dict:
    import tomllib

    return tomllib.loads((fleet.tool.home.path / "sources.toml").read_text())


def _no_verifying(monkeypatch):
    import agentctl.sync as sync_mod

    def refuse(*a, **kw):
        raise AssertionError("an unchanged source was verified again")

    monkeypatch.setattr(sync_mod, "_apply", refuse)
    monkeypatch.setattr("agentctl.jws.decode", refuse)


def test_unchanged_source_one_conditional_request_nothing_verified_nothing_written(fleet, monkeypatch):
    fleet.publish()
    fleet.sync()
    etags = {st["etag"] for st in _state(fleet).values()}
    assert len(etags) == 2
    before = _files(fleet.tool.home.path)
    fleet.server.requests.clear()
    fleet.clock.advance(600)
    _no_verifying(monkeypatch)
    for _ in range(3):
        assert statuses(fleet.sync()) == [("trust", "current", None), ("revocations", "current", None)]
    assert len(fleet.server.requests) == 6
    assert {h["If-None-Match"] for _p, h in fleet.server.requests} == etags
    assert _files(fleet.tool.home.path) == before


def test_new_validators_for_the_same_token_are_kept_without_verifying_again(fleet, monkeypatch):
    fleet.publish()
    fleet.sync()
    import tomli_w

    doc = _state(fleet)
    served = {url: st["etag"] for url, st in doc.items()}
    (fleet.tool.home.path / "sources.toml").write_text(tomli_w.dumps({url: dict(st, etag='"old"') for url, st in doc.items()}))
    fleet.server.requests.clear()
    _no_verifying(monkeypatch)
    assert statuses(fleet.sync()) == [("trust", "current", None), ("revocations", "current", None)]  # 200, same token
    assert {url: st["etag"] for url, st in _state(fleet).items()} == served
    before = _files(fleet.tool.home.path)
    assert statuses(fleet.sync())[0][1] == "current"  # now a 304, and nothing written
    assert _files(fleet.tool.home.path) == before
    assert len(fleet.server.requests) == 4


def test_an_error_is_cleared_by_the_next_unchanged_fetch(fleet):
    fleet.publish()
    fleet.sync()
    route = fleet.server.routes["/revs.jwt"]
    fleet.server.routes["/revs.jwt"] = ("status", 500)
    assert statuses(fleet.sync())[1] == ("revocations", "unreachable", None)
    url = fleet.server.url("/revs.jwt")
    assert "HTTP 500" in _state(fleet)[url]["error"]
    fleet.server.routes["/revs.jwt"] = route
    assert statuses(fleet.sync())[1] == ("revocations", "current", None)
    assert "error" not in _state(fleet)[url]
