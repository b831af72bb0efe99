"""The library verifier needs no home: trust and revocations given in code, a clock passed in.

The module-level helpers (``Agent``, ``make_grant``, ``make_action``) mint tokens directly with
``agentctl.jws``; the other action test modules import them.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentctl import crypto, jws
from agentctl.actions import action_claims, payload_digest
from agentctl.clock import FixedClock
from agentctl.errors import REASONS, VerificationError
from agentctl.grants import grant_claims, parse_chain
from agentctl.models import Key, Principal, Revocation, Revocations
from agentctl.scopes import parse_scopes
from agentctl.verify import NO_AUDIT, StaticTrust, VerifiedAction, Verifier

NOW = 1_800_000_000
DOCS = Path(__file__).resolve().parent.parent / "docs" / "verifying.md"


@dataclass(frozen=True)
class Agent:
    """A principal's name and key, held in memory only."""

    name: str
    seed: bytes

    @classmethod
    def new(cls, name: str) -> "Agent":
        return cls(name, os.urandom(32))

    @property
    def public(self) -> bytes:
        return crypto.public_key(self.seed)

    @property
    def kid(self) -> str:
        from agentctl.encoding import thumbprint

        return thumbprint(self.public)


def make_grant(signer: Agent, to: Agent, scope: str, *, now: int = NOW, ttl: int = 600, parent: str | None = None,
               audience: tuple[str, ...] | None = None, max_depth: int = 0, **override) -> str:
    """A grant from ``signer`` to ``to``; with ``parent``, a re-delegation signed by its holder."""
    parent_hop = parse_chain(parent).leaf if parent else None
    claims = grant_claims(
        iss=signer.name, sub=parent_hop.sub if parent_hop else signer.name, delegate=to.name,
        delegate_public=to.public, scopes=parse_scopes(scope), now=now, ttl=ttl, max_depth=max_depth,
        audience=audience, parent=parent_hop,
    )
    claims.update(override)
    token = jws.encode(jws.GRANT, claims, signer.seed)
    return f"{parent}~{token}" if parent else token  # the parent's presentation, extended


def make_action(agent: Agent, action: str, resource: str, *, grant: str | None = None, data: bytes = b"",
                embed: bool = False, now: int = NOW, ttl: int = 300, audience: str | None = None,
                sub: str | None = None, seed: bytes | None = None, **override) -> str:
    """An action signed by ``agent`` (or by ``seed``, to forge), on behalf of the grant's root."""
    if sub is None:
        sub = parse_chain(grant).root.sub if grant else agent.name
    claims = action_claims(iss=agent.name, sub=sub, action=action, resource=resource, data=data, embed=embed,
                           now=now, ttl=ttl, audience=audience, grant=parse_chain(grant).leaf.digest if grant else None)
    claims.update(override)
    token = jws.encode(jws.ACTION, claims, seed or agent.seed)
    return f"{grant}~{token}" if grant else token


def reason_of(fn, *args, **kw) -> str:
    with pytest.raises(VerificationError) as info:
        fn(*args, **kw)
    assert info.value.reason in REASONS
    return info.value.reason


@pytest.fixture
def world():
    alice, deployer = Agent.new("user:alice"), Agent.new("agent:deployer")
    grant = make_grant(alice, deployer, "deploy.staging:api/*")
    clock = FixedClock(NOW + 5)
    verifier = Verifier(StaticTrust({"user:alice": alice.public}), recorder=NO_AUDIT, clock=clock)
    return alice, deployer, grant, clock, verifier


# --- no home --------------------------------------------------------------------------------------


def test_verifies_without_a_home(world, tmp_path, monkeypatch):
    alice, deployer, grant, clock, verifier = world
    nowhere = tmp_path / "no-such-home"
    monkeypatch.setenv("AGENTCTL_HOME", str(nowhere))
    token = make_action(deployer, "deploy.staging", "api/web", grant=grant, data=b'{"v": 1}')
    v = verifier.verify_action(token, action="deploy.staging", resource="api/web", data=b'{"v": 1}')
    assert isinstance(v, VerifiedAction)
    assert (v.agent, v.on_behalf_of, v.chain) == ("agent:deployer", "user:alice", ("user:alice", "agent:deployer"))
    assert str(v.scope) == "deploy.staging:api/*"
    assert v.expires_at == NOW + 300
    assert not nowhere.exists()


def test_verdict_has_exactly_the_spec_fields(world):
    alice, deployer, grant, clock, verifier = world
    token = make_action(deployer, "deploy.staging", "api/web", grant=grant)
    doc = verifier.verify_action(token).verdict()
    assert set(doc) == {"ok", "reason", "detail", "type", "agent", "agent_known", "on_behalf_of", "chain", "action",
                        "resource", "scope", "audience", "expires_at", "jti", "approval", "policy"}
    assert doc["agent_known"] is False  # the tool trusts alice; it does not know the agent
    assert doc["ok"] is True and doc["reason"] is None and doc["type"] == "action"
    assert doc["chain"] == ["user:alice", "agent:deployer"]
    assert doc["expires_at"] == "2027-01-15T08:05:00Z"
    assert doc["jti"] == jws.decode(token.rpartition("~")[2], jws.ACTION).claims["jti"]
    json.dumps(doc)  # plain JSON values only


def test_each_failure_raises_with_its_reason(world):
    alice, deployer, grant, clock, verifier = world
    ok = make_action(deployer, "deploy.staging", "api/web", grant=grant, data=b"x")
    assert reason_of(verifier.verify_action, ok, action="deploy.production", resource="api/web") == "scope_denied"
    assert reason_of(verifier.verify_action, ok, action="deploy.staging", resource="api/db") == "scope_denied"
    assert reason_of(verifier.verify_action, ok, data=b"y") == "payload_mismatch"
    outside = make_action(deployer, "deploy.production", "api/web", grant=grant)
    assert reason_of(verifier.verify_action, outside) == "scope_denied"
    assert reason_of(verifier.verify_action, ok[:-2]) == "malformed"
    assert reason_of(verifier.verify_action, grant) == "malformed"  # a grant is not an action
    stranger = Verifier(StaticTrust({}), recorder=NO_AUDIT, clock=clock)
    assert reason_of(stranger.verify_action, ok) == "untrusted_root"


def test_time_comes_from_the_clock(world):
    alice, deployer, grant, clock, verifier = world
    token = make_action(deployer, "deploy.staging", "api/web", grant=grant)
    verifier.verify_action(token)
    clock.advance(300 + 60)  # exp + leeway
    assert reason_of(verifier.verify_action, token) == "expired"
    clock.advance(-300 - 60)
    verifier.verify_action(token)  # the cache holds the chain, never the verdict of a time check
    early = make_action(deployer, "deploy.staging", "api/web", grant=grant, now=NOW + 200)
    assert reason_of(verifier.verify_action, early) == "not_yet_valid"
    assert verifier.verify_action(early, at=NOW + 200).at == NOW + 200
    strict = Verifier(StaticTrust({"user:alice": alice.public}), recorder=NO_AUDIT, clock=clock, leeway=0)
    clock.now = NOW + 300
    assert reason_of(strict.verify_action, token) == "expired"


@pytest.mark.parametrize("kind", ["principal:user:alice", "principal:agent:deployer", "key:alice", "key:deployer",
                                  "grant", "action"])
def test_revocations_given_in_code_take_effect(world, kind):
    alice, deployer, grant, clock, verifier = world
    token = make_action(deployer, "deploy.staging", "api/web", grant=grant)
    what, _, ident = kind.partition(":")
    ident = {"alice": alice.kid, "deployer": deployer.kid}.get(ident, ident)
    if what == "grant":
        ident = parse_chain(grant).leaf.jti
    if what == "action":
        what, ident = "grant", jws.decode(token.rpartition("~")[2], jws.ACTION).claims["jti"]  # an action is revoked by its jti
    revs = Revocations((Revocation(what, ident, NOW),))
    in_trust = Verifier(StaticTrust({"user:alice": alice.public}, revs), recorder=NO_AUDIT, clock=clock)
    extra = Verifier(StaticTrust({"user:alice": alice.public}), recorder=NO_AUDIT, clock=clock, revocations=[revs])
    for v in (in_trust, extra):
        with pytest.raises(VerificationError) as info:
            v.verify_action(token)
        assert info.value.reason == "revoked"
    verifier.verify_action(token)  # the unrevoked verifier still accepts it


def test_three_hop_chain(world):
    alice, deployer, grant, clock, verifier = world
    lead, worker = Agent.new("agent:lead"), Agent.new("agent:worker")
    g1 = make_grant(alice, lead, "deploy.*:api/**", max_depth=2)
    g2 = make_grant(lead, deployer, "deploy.staging:api/**", parent=g1, max_depth=1)
    g3 = make_grant(deployer, worker, "deploy.staging:api/web", parent=g2)
    token = make_action(worker, "deploy.staging", "api/web", grant=g3)
    v = verifier.verify_action(token, action="deploy.staging", resource="api/web")
    assert v.chain == ("user:alice", "agent:lead", "agent:deployer", "agent:worker")
    assert v.on_behalf_of == "user:alice" and str(v.scope) == "deploy.staging:api/web"
    assert reason_of(verifier.verify_action, make_action(worker, "deploy.staging", "api/db", grant=g3)) == "scope_denied"
    # the middle agent cannot use the leaf grant
    assert reason_of(verifier.verify_action, make_action(deployer, "deploy.staging", "api/web", grant=g3)) == "chain_broken"


def test_own_authority_action_and_retired_keys():
    bot = Agent.new("agent:bot")
    new = Agent.new("agent:bot")
    retired_at = NOW + 100
    principal = Principal(name="agent:bot", origin="imported", created=NOW - 1000, keys=(
        Key(bot.public, NOW - 1000, "retired", retired_at), Key(new.public, retired_at)))
    trust = StaticTrust({"agent:bot": principal}, authority={"agent:bot": ["report.*"]})
    verifier = Verifier(trust, recorder=NO_AUDIT, clock=FixedClock(NOW + 150))
    before = make_action(bot, "report.send", "daily", now=NOW + 50)
    v = verifier.verify_action(before)
    assert (v.agent, v.on_behalf_of, v.chain, v.scope) == ("agent:bot", "agent:bot", ("agent:bot",), None)
    after = make_action(bot, "report.send", "daily", now=NOW + 120)
    assert reason_of(verifier.verify_action, after) == "bad_signature"
    verifier.verify_action(make_action(new, "report.send", "daily", now=NOW + 120))
    assert reason_of(verifier.verify_action, make_action(Agent.new("agent:bot"), "report.send", "daily")) == "unknown_key"
    behalf = make_action(new, "report.send", "daily", now=NOW + 120, sub="user:alice")
    assert reason_of(verifier.verify_action, behalf) == "chain_broken"  # no grant, no "on behalf of" anyone else


def test_audience(world):
    alice, deployer, grant, clock, verifier = world
    aimed = make_grant(alice, deployer, "deploy.staging:api/*", audience=("tools.example",))
    token = make_action(deployer, "deploy.staging", "api/web", grant=aimed, audience="tools.example")
    assert reason_of(verifier.verify_action, token) == "audience_mismatch"
    assert reason_of(verifier.verify_action, token, audience="elsewhere") == "audience_mismatch"
    verifier.verify_action(token, audience="tools.example")


def test_a_verifier_is_safe_across_threads(world):
    """A tool server shares one Verifier; more distinct grants than its cache holds, from 8 threads."""
    alice, deployer, grant, clock, verifier = world
    tokens = [make_action(deployer, "deploy.staging", "api/web",
                          grant=make_grant(alice, deployer, "deploy.staging:api/*")) for _ in range(1100)]
    errors: list[BaseException] = []

    def work(part):
        try:
            for t in part:
                verifier.verify_action(t)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(tokens[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_revocation_list_without_a_home(world, tmp_path):
    """verify_list checks a list exported elsewhere against trust given in code."""
    from agentctl.revocation_lists import verify_list

    alice, deployer, grant, clock, verifier = world
    claims = {"iss": "user:alice", "iat": NOW, "jti": "a" * 22, "version": 3,
              "revoked": {"principals": [{"id": "agent:deployer", "at": "2027-01-15T08:00:00Z"}], "keys": [], "grants": []}}
    token = jws.encode(jws.REVOCATIONS, claims, alice.seed)
    trust = StaticTrust({"user:alice": alice.public})
    rl = verify_list(token, trust)
    assert (rl.issuer, rl.version) == ("user:alice", 3)
    action = make_action(deployer, "deploy.staging", "api/web", grant=grant)
    assert reason_of(Verifier(trust, recorder=NO_AUDIT, clock=clock, revocations=[rl.revocations]).verify_action, action) == "revoked"
    forged = jws.encode(jws.REVOCATIONS, claims, deployer.seed)
    assert reason_of(verify_list, forged, trust) == "unknown_key"


# --- the tool server of docs/verifying.md ---------------------------------------------------------


def _tool_server_source() -> str:
    text = DOCS.read_text("utf-8")
    blocks = re.findall(r"```python\n(# tool_server\.py.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/verifying.md has one ```python block starting with '# tool_server.py'"
    return blocks[0]


@pytest.fixture
def server_module():
    namespace: dict = {"__name__": "tool_server"}
    exec(compile(_tool_server_source(), str(DOCS), "exec"), namespace)
    return namespace


def test_docs_tool_server_handler(world, server_module):
    alice, deployer, grant, clock, _ = world
    app = server_module["ToolServer"]({"user:alice": alice.public}, clock=clock)
    body = b'{"image": "web:1.4.2"}'
    token = make_action(deployer, "deploy.staging", "api/web", grant=grant, data=body)
    headers = {"Authorization": f"AgentAction {token}"}

    status, doc = app.handle("POST", "/deploy.staging/api/web", headers, body)
    assert status == 200 and doc["ok"] and doc["agent"] == "agent:deployer" and doc["on_behalf_of"] == "user:alice"

    status, doc = app.handle("POST", "/deploy.staging/api/web", headers, body)  # the same action again
    assert (status, doc["reason"]) == (409, "replayed")

    fresh = make_action(deployer, "deploy.staging", "api/web", grant=grant, data=body)
    h = {"Authorization": f"AgentAction {fresh}"}
    assert app.handle("POST", "/deploy.production/api/web", h, body)[1]["reason"] == "scope_denied"
    assert app.handle("POST", "/deploy.staging/api/db", h, body)[1]["reason"] == "scope_denied"
    assert app.handle("POST", "/deploy.staging/api/web", h, b"{}")[1]["reason"] == "payload_mismatch"
    assert app.handle("POST", "/deploy.staging/api/web", {}, body)[0] == 401
    assert app.handle("GET", "/deploy.staging/api/web", h, body)[0] == 405
    assert app.handle("POST", "/nothing", h, body)[0] == 404
    status, doc = app.handle("POST", "/deploy.staging/api/web", h, body)  # refusals did not use it up
    assert status == 200

    clock.advance(400)
    late = {"Authorization": f"AgentAction {make_action(deployer, 'deploy.staging', 'api/web', grant=grant, data=body)}"}
    assert app.handle("POST", "/deploy.staging/api/web", late, body)[1]["reason"] == "expired"


def test_docs_tool_server_revocations(world, server_module):
    alice, deployer, grant, clock, _ = world
    app = server_module["ToolServer"]({"user:alice": alice.public}, clock=clock)
    claims = {"iss": "user:alice", "iat": NOW, "jti": "b" * 22, "version": 1,
              "revoked": {"principals": [{"id": "agent:deployer", "at": "2027-01-15T08:00:00Z"}]}}
    token = make_action(deployer, "deploy.staging", "api/web", grant=grant)
    headers = {"Authorization": f"AgentAction {token}"}
    assert app.handle("POST", "/deploy.staging/api/web", headers, b"")[0] == 200
    app.load_revocations(jws.encode(jws.REVOCATIONS, claims, alice.seed))
    again = {"Authorization": f"AgentAction {make_action(deployer, 'deploy.staging', 'api/web', grant=grant)}"}
    assert app.handle("POST", "/deploy.staging/api/web", again, b"")[1]["reason"] == "revoked"
    older = dict(claims, version=0, jti="c" * 22, revoked={})
    with pytest.raises(VerificationError):  # version 0 is not a version at all
        app.load_revocations(jws.encode(jws.REVOCATIONS, older, alice.seed))
    app.load_revocations(jws.encode(jws.REVOCATIONS, dict(claims, version=2, jti="d" * 22), alice.seed))
    older = dict(claims, version=1, jti="e" * 22, revoked={})  # a rollback to a list without the revocation
    with pytest.raises(VerificationError) as info:
        app.load_revocations(jws.encode(jws.REVOCATIONS, older, alice.seed))
    assert info.value.reason == "replayed"


def test_docs_tool_server_over_loopback(world, server_module):
    alice, deployer, grant, clock, _ = world
    app = server_module["ToolServer"]({"user:alice": alice.public}, clock=clock)
    server = server_module["make_server"](app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        body = b'{"image": "web:1.4.2"}'
        token = make_action(deployer, "deploy.staging", "api/web", grant=grant, data=body)
        for expected, reason in ((200, None), (409, "replayed")):
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
            conn.request("POST", "/deploy.staging/api/web", body=body, headers={"Authorization": f"AgentAction {token}"})
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            conn.close()
            assert resp.status == expected and doc["reason"] == reason
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_payload_digest_is_sha256_hex():
    assert payload_digest(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_the_curated_library_api_resolves():
    import agentctl

    for name in agentctl.__all__:
        assert getattr(agentctl, name) is not None, name
    assert agentctl.Verifier.__module__ == "agentctl.verify"
