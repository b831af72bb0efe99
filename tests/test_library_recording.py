"""The library records its own decisions, seen-stores keep `once`, keys held in memory mint and sign
with no home, and one value check serves the CLI and the library."""

from __future__ import annotations

import json

import pytest

from agentctl.clock import FixedClock
from agentctl.delegation import delegate_with
from agentctl.errors import UsageError, VerificationError
from agentctl.seen import MAX_LEEWAY, HomeSeenStore, MemorySeenStore
from agentctl.signing import sign_action_with, signer_from_seed
from agentctl.verify import NO_AUDIT, StaticTrust, Verifier, verdict_event

from test_library_verifier import NOW, Agent, make_action, make_grant


class Events:
    """A fake recorder: what was recorded, in order."""

    def __init__(self) -> None:
        self.events: list = []

    def record(self, *events) -> None:
        self.events.extend(events)


def world():
    alice, bot = Agent.new("user:alice"), Agent.new("agent:bot")
    return alice, bot, StaticTrust({"user:alice": alice.public})


def test_a_verifier_needs_a_recorder_and_once_needs_a_seen_store():
    _, _, trust = world()
    with pytest.raises(UsageError, match="recorder"):
        Verifier(trust)
    with pytest.raises(UsageError, match="seen-store"):
        Verifier(trust, recorder=NO_AUDIT, once=True)
    with pytest.raises(UsageError, match="leeway"):
        Verifier(trust, recorder=NO_AUDIT, leeway=MAX_LEEWAY + 1)
    Verifier(trust, recorder=NO_AUDIT, once=True, seen=MemorySeenStore())


def test_every_decision_is_recorded_as_the_cli_records_it():
    alice, bot, trust = world()
    rec = Events()
    v = Verifier(trust, recorder=rec, clock=FixedClock(NOW + 5))
    grant = make_grant(alice, bot, "deploy.staging:api/*")
    ok = make_action(bot, "deploy.staging", "api/web", grant=grant)
    doc = v.verify_action(ok).verdict()
    bad = make_action(bot, "deploy.prod", "api/web", grant=grant)
    with pytest.raises(VerificationError) as e:
        v.verify_action(bad)
    assert [(ev.event, ev.outcome, ev.reason) for ev in rec.events] == [("verify", "allow", None), ("verify", "deny", "scope_denied")]
    assert rec.events[0] == verdict_event(doc, ok)
    assert rec.events[1] == verdict_event(e.value.verdict, bad)
    assert e.value.verdict["reason"] == "scope_denied" and e.value.verdict["type"] == "action"
    assert rec.events[1].principal == "agent:bot"


def test_once_over_a_memory_store_refuses_the_second_use_and_records_only_what_held():
    alice, bot, trust = world()
    seen = MemorySeenStore()
    v = Verifier(trust, recorder=NO_AUDIT, clock=FixedClock(NOW + 5), once=True, seen=seen)
    grant = make_grant(alice, bot, "deploy.staging:api/*")
    token = make_action(bot, "deploy.staging", "api/web", grant=grant, data=b"x")
    with pytest.raises(VerificationError):
        v.verify_action(token, data=b"y")  # refused before once: not used up
    assert len(seen) == 0
    v.verify_action(token, data=b"x")
    with pytest.raises(VerificationError) as e:
        v.verify_action(token, data=b"x")
    assert e.value.reason == "replayed"
    with pytest.raises(UsageError):  # once is about now
        v.verify_action(token, at=NOW)


@pytest.mark.parametrize("store", ["memory", "home"])
def test_a_record_lasts_past_the_largest_leeway_not_the_recording_calls(store, tmp_path):
    """Issue 9.9: recorded with leeway 0, an action must still be refused by a verifier whose leeway is
    10m, after its exp; and records past exp + 10m are swept."""
    from agentctl.home import Home

    s = MemorySeenStore() if store == "memory" else HomeSeenStore(Home(tmp_path / "h"), sweep_chance=0)
    s.remember("agent:bot", "j" * 22, exp=1000, now=900)
    for now in (1001, 1000 + MAX_LEEWAY - 1):
        if store == "memory":
            s.sweep(now)
        else:
            s.sweep(now)
        with pytest.raises(VerificationError):
            s.remember("agent:bot", "j" * 22, exp=1000, now=now)
    s.sweep(1000 + MAX_LEEWAY + 1)
    if store == "memory":
        assert len(s) == 0
    else:
        assert list((tmp_path / "h" / "seen").iterdir()) == []
    s.remember("agent:bot", "j" * 22, exp=1000, now=1000 + MAX_LEEWAY + 1)  # forgotten: it could not verify anyway


def test_far_future_actions_are_still_refused_the_second_time(tmp_path):
    from agentctl.home import Home

    s = HomeSeenStore(Home(tmp_path / "h"), sweep_chance=1)
    s.remember("agent:bot", "k" * 22, exp=253402300799, now=1000)
    with pytest.raises(VerificationError):
        s.remember("agent:bot", "k" * 22, exp=253402300799, now=10**9)


def test_home_less_minting_and_signing_verify():
    alice = signer_from_seed("user:alice", bytes(range(32)))
    bot = signer_from_seed("agent:bot", bytes(range(1, 33)))
    clock = FixedClock(NOW)
    rec = Events()
    grant, chain = delegate_with(alice, to="agent:bot", to_public=bot.public, scopes=["deploy.*:api/*"], ttl=600,
                                 clock=clock, recorder=rec)
    token = sign_action_with(bot, action="deploy.staging", resource="api/web", grant=grant, data=b"x", clock=clock, recorder=rec)
    assert [(e.event, e.outcome) for e in rec.events] == [("delegate", "ok"), ("sign", "ok")]
    with pytest.raises(VerificationError):  # the grant does not allow it: refused and recorded, nothing signed
        sign_action_with(bot, action="repo.delete", resource="api/web", grant=grant, clock=clock, recorder=rec)
    assert (rec.events[-1].event, rec.events[-1].outcome, rec.events[-1].reason) == ("sign", "deny", "scope_denied")
    v = Verifier(StaticTrust({"user:alice": alice.public}), recorder=NO_AUDIT, clock=FixedClock(NOW + 5))
    assert v.verify_action(token, data=b"x").agent == "agent:bot"


def test_one_resource_check_for_the_cli_and_the_library(cli, home):
    """Issue 8.4: a 1,504-character resource was a usage error in verify and accepted by Verifier."""
    _, _, trust = world()
    v = Verifier(trust, recorder=NO_AUDIT)
    with pytest.raises(UsageError) as e:
        v.verify("a.b.c", action="x.y", resource="a" * 1504)
    assert e.value.param == "resource"
    r = cli("verify", "a.b.c", "--action", "x.y", "--resource", "a" * 1504)
    assert r.code == 2 and "bad --resource" in r.stderr


def test_expect_and_audience_rules(cli, home):
    alice, bot, trust = world()
    v = Verifier(trust, recorder=NO_AUDIT, clock=FixedClock(NOW + 5))
    grant = make_grant(alice, bot, "deploy.staging:api/*")
    with pytest.raises(VerificationError) as e:
        v.verify(grant, expect="action")
    assert e.value.reason == "malformed"
    with pytest.raises(VerificationError) as e:
        v.verify(make_action(bot, "deploy.staging", "api/web", grant=grant), expect="grant")
    assert e.value.reason == "malformed"
    with pytest.raises(VerificationError) as e:  # --audience requires aud in the token
        v.verify(make_action(bot, "deploy.staging", "api/web", grant=grant), audience="tools.example")
    assert e.value.reason == "audience_mismatch"
    with pytest.raises(VerificationError) as e:
        v.verify(grant, audience="tools.example")
    assert e.value.reason == "audience_mismatch"
    assert cli("verify", grant, "--expect", "sometimes").code == 2
    assert cli("verify", grant, "--leeway", "11m").code == 2
    assert cli("verify", grant, "--leeway", "10m", "--expect", "grant").code == 1  # alice is unknown here: a denial


def test_batch_lines_cannot_set_the_verifiers_flags_and_bad_bytes_do_not_stop_it(cli, home):
    alice, bot, _ = world()
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text('authority = "roles"\n[roles.lead]\nscopes = ["deploy.*:**"]\n')
    from agentctl.encoding import b64u_encode

    assert cli("import", "user:alice", b64u_encode(alice.public), "--role", "lead").code == 0
    import time

    now = int(time.time())
    grant = make_grant(alice, bot, "deploy.staging:api/*", audience=("tool.a",), now=now)
    token = make_action(bot, "deploy.staging", "api/web", grant=grant, audience="tool.a", now=now)
    lines = [json.dumps({"token": token, "audience": "tool.a"}), json.dumps({"token": token, "once": False}),
             json.dumps({"token": token, "expect": "action"}), json.dumps({"token": token, "policy": "x"}),
             token]
    data = ("\n".join(lines[:2]) + "\n").encode() + b"\xff\xfe not utf-8\n" + ("\n".join(lines[2:]) + "\n").encode()
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "agentctl"
    r = subprocess.run([str(exe), "--home", str(home), "verify", "--batch", "--audience", "tool.a"], input=data,
                       capture_output=True, timeout=120)
    out = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert [v["line"] for v in out] == [1, 2, 3, 4, 5, 6]
    assert [v["reason"] for v in out] == ["malformed"] * 5 + [None]
    assert "not UTF-8" in out[2]["detail"]
    assert r.returncode == 1


def test_a_tool_server_on_the_public_api_records_what_the_cli_records(cli, home):
    """A verifier built only from agentctl.__all__ (a home-less tool server with once) records, for the
    same tokens, the same events as `agentctl verify --once` in a home."""
    import time

    import agentctl
    from agentctl.encoding import b64u_encode

    alice = agentctl.signer_from_seed("user:alice", bytes(range(32)))
    bot = agentctl.signer_from_seed("agent:bot", bytes(range(1, 33)))
    now = int(time.time())  # --once runs on the real clock
    clock = agentctl.FixedClock(now)
    grant, _ = agentctl.delegate_with(alice, to="agent:bot", to_public=bot.public, scopes=["deploy.*:api/*"], clock=clock)
    good = agentctl.sign_action_with(bot, action="deploy.staging", resource="api/web", grant=grant, data=b"x", clock=clock)
    tokens = [(good, "api/web"), (good, "api/web"), (good, "api/db")]

    home.mkdir(mode=0o700)
    (home / "config.toml").write_text('authority = "roles"\n[roles.lead]\nscopes = ["deploy.*:**"]\n')
    assert cli("import", "user:alice", b64u_encode(alice.public), "--role", "lead").code == 0
    before = len(json.loads(cli("--json", "audit").stdout)["events"])
    for token, resource in tokens:
        cli("verify", token, "--action", "deploy.staging", "--resource", resource, "--data", "-", "--once", input="x")
    logged = list(reversed(json.loads(cli("--json", "audit").stdout)["events"]))[before:]

    rec = Events()
    trust = agentctl.StaticTrust({"user:alice": alice.public}, authority={"user:alice": ["deploy.*:**"]})
    server = agentctl.Verifier(trust, recorder=rec, once=True, seen=agentctl.MemorySeenStore())
    for token, resource in tokens:
        try:
            server.verify_action(token, action="deploy.staging", resource=resource, data=b"x")
        except agentctl.VerificationError:
            pass
    fields = ("event", "outcome", "principal", "on_behalf_of", "chain", "action", "resource", "reason", "jtis")
    mine = [{f: (list(getattr(e, f)) if isinstance(getattr(e, f), tuple) else getattr(e, f)) for f in fields} | {"metadata": e.metadata} for e in rec.events]
    theirs = [{f: e.get(f) for f in fields} | {"metadata": e.get("metadata")} for e in logged]
    assert len(theirs) == len(mine) == 3
    assert [m["reason"] for m in mine] == [None, "replayed", "scope_denied"]
    assert all(set(fields) <= set(e) for e in logged), logged[0].keys()
    for m, t in zip(mine, theirs, strict=True):
        assert {k: m[k] for k in fields} == {k: t[k] for k in fields}
        assert m["metadata"] == t["metadata"]
