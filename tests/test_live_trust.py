"""A long-running verifier over a home (the MCP guard, ``verify --batch``, ``Verifier.for_home``) sees a
change to the home's trust at its very next check, without a restart. From the attacker's side: one
Verifier (one Guard) kept across each change, and a token that the change must turn from allowed to
denied."""

from __future__ import annotations

import os

import pytest

from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.delegation import delegate
from agentctl.encoding import did_key
from agentctl.errors import VerificationError
from agentctl.home import Home
from agentctl.identity import import_principal, keygen, rotate, set_roles
from agentctl.signers import signer_for
from agentctl.signing import sign_action, sign_action_with, signer_from_seed
from agentctl.store import Store
from agentctl.trust_bundles import export_bundle, import_bundle
from agentctl.verify import NO_AUDIT, StoreTrust, Verifier
from agentctl.verify import trust as trust_mod

T0 = 1_800_000_000
ROLES = ('authority = "roles"\n\n[roles.deployer]\nscopes = ["deploy.*:prod/*"]\nagents = true\n')


def _ctx(path, config: str | None = None, clock=None) -> Context:
    ctx = Context(Home(path), clock=clock or FixedClock(T0))
    ctx.home.ensure()
    if config is not None:
        ctx.home.config_file.write_text(config)
        ctx.home._config = None
    return ctx


def _denied(v: Verifier, fn: str, token: str, **kw) -> str:
    with pytest.raises(VerificationError) as e:
        getattr(v, fn)(token, **kw)
    return e.value.reason


@pytest.fixture
def tool(tmp_path):
    ctx = _ctx(tmp_path / "tool", ROLES)
    keygen(ctx, "user:alice", roles=("deployer",))
    keygen(ctx, "agent:bot")
    return ctx


def test_role_remove_denies_the_very_next_check_of_a_memoized_grant(tool):
    v = Verifier.for_home(tool.home, recorder=NO_AUDIT, clock=tool.clock)
    grant, _ = delegate(tool, to="agent:bot", scopes=["deploy.*:prod/*"], issuer="user:alice")
    for _ in range(2):  # the second check comes from the memo
        v.verify_grant(grant, action="deploy.run", resource="prod/web")
    set_roles(tool, "user:alice", remove=("deployer",))
    assert _denied(v, "verify_grant", grant, action="deploy.run", resource="prod/web") == "scope_escalation"
    set_roles(tool, "user:alice", add=("deployer",))  # and back: allowed again, still without a restart
    v.verify_grant(grant, action="deploy.run", resource="prod/web")


def test_an_agents_own_role_removed_denies_its_next_action(tool):
    keygen(tool, "agent:ops", roles=("deployer",))
    v = Verifier.for_home(tool.home, recorder=NO_AUDIT, clock=tool.clock)
    first = sign_action(tool, as_="agent:ops", action="deploy.run", resource="prod/web")
    v.verify_action(first, action="deploy.run", resource="prod/web")
    set_roles(tool, "agent:ops", remove=("deployer",))
    again = sign_action(tool, as_="agent:ops", action="deploy.run", resource="prod/web")
    assert _denied(v, "verify_action", again, action="deploy.run", resource="prod/web") == "scope_denied"


def test_a_bundle_that_drops_a_principal_is_seen_at_the_next_check(tmp_path):
    clock = FixedClock(T0)
    admin = _ctx(tmp_path / "admin", clock=clock)
    tool = _ctx(tmp_path / "tool", ROLES + '\n[[sources]]\nkind = "trust"\nurl = "file:///nowhere/trust.jwt"\n'
                'signer = "user:admin"\nnames = ["agent:*"]\nroles = ["deployer"]\n', clock=clock)
    signer, _ = keygen(admin, "user:admin")
    keygen(admin, "agent:a1", roles=("deployer",))
    keygen(admin, "agent:a2", roles=("deployer",))
    import_principal(tool, "user:admin", did_key(signer.current.public))
    import_bundle(tool, export_bundle(admin, "user:admin")[0])
    v = Verifier.for_home(tool.home, recorder=NO_AUDIT, clock=clock)
    token = sign_action(admin, as_="agent:a2", action="deploy.run", resource="prod/web")
    v.verify_action(token, action="deploy.run", resource="prod/web")
    Store(admin.home).delete("agent:a2")  # the next bundle no longer lists it: no longer trusted here
    import_bundle(tool, export_bundle(admin, "user:admin")[0])
    assert _denied(v, "verify_action", token, action="deploy.run", resource="prod/web") == "untrusted_root"
    other = sign_action(admin, as_="agent:a1", action="deploy.run", resource="prod/web")
    v.verify_action(other, action="deploy.run", resource="prod/web")  # what the bundle still lists stays


def test_a_key_retired_by_rotate_signs_nothing_after_retirement(tool):
    clock = tool.clock
    keygen(tool, "agent:ops", roles=("deployer",))
    v = Verifier.for_home(tool.home, recorder=NO_AUDIT, clock=clock)
    old = signer_for(tool, "agent:ops")
    before = sign_action_with(old, action="deploy.run", resource="prod/web", clock=clock)
    v.verify_action(before, action="deploy.run", resource="prod/web")
    clock.advance(10)
    rotate(tool, "agent:ops")
    clock.advance(10)
    stolen = sign_action_with(old, action="deploy.run", resource="prod/web", clock=clock)
    assert _denied(v, "verify_action", stolen, action="deploy.run", resource="prod/web") == "bad_signature"
    v.verify_action(before, action="deploy.run", resource="prod/web")  # signed before: still holds
    new = sign_action(tool, as_="agent:ops", action="deploy.run", resource="prod/web")
    v.verify_action(new, action="deploy.run", resource="prod/web")


def test_a_principal_imported_while_running_becomes_known(tool):
    v = Verifier.for_home(tool.home, recorder=NO_AUDIT, clock=tool.clock)
    newcomer = signer_from_seed("agent:new", os.urandom(32))
    token = sign_action_with(newcomer, action="deploy.run", resource="prod/web", clock=tool.clock)
    assert _denied(v, "verify_action", token, action="deploy.run", resource="prod/web") == "untrusted_root"
    import_principal(tool, "agent:new", did_key(newcomer.public), roles=("deployer",))
    assert v.verify_action(token, action="deploy.run", resource="prod/web").agent_known


def test_a_config_change_of_the_authority_rule_is_picked_up(tmp_path):
    ctx = _ctx(tmp_path / "tool", 'authority = "quick-start"\n')
    keygen(ctx, "user:alice")
    keygen(ctx, "agent:bot")
    v = Verifier.for_home(ctx.home, recorder=NO_AUDIT, clock=ctx.clock)
    grant, _ = delegate(ctx, to="agent:bot", scopes=["deploy.*:prod/*"], issuer="user:alice")
    v.verify_grant(grant, action="deploy.run", resource="prod/web")
    ctx.home.config_file.write_text(ROLES)  # alice holds no role: under roles she has no authority
    reason = _denied(v, "verify_grant", grant, action="deploy.run", resource="prod/web")
    assert reason == "scope_escalation"
    ctx.home.config_file.write_text('authority = "roles"\n\n[roles.all]\nscopes = ["deploy.*:prod/*"]\n')
    set_roles(ctx, "user:alice", add=("all",))
    v.verify_grant(grant, action="deploy.run", resource="prod/web")


def test_require_known_agents_switched_on_while_running(tmp_path):
    ctx = _ctx(tmp_path / "tool")
    keygen(ctx, "user:alice")
    stranger = signer_from_seed("agent:stranger", os.urandom(32))
    v = Verifier.for_home(ctx.home, recorder=NO_AUDIT, clock=ctx.clock)
    from agentctl.delegation import delegate_with

    grant, _ = delegate_with(signer_for(ctx, "user:alice"), to="agent:stranger", to_public=stranger.public,
                             scopes=["deploy.*:prod/*"], clock=ctx.clock)
    token = sign_action_with(stranger, action="deploy.run", resource="prod/web", grant=grant, clock=ctx.clock)
    v.verify_action(token, action="deploy.run", resource="prod/web")
    ctx.home.config_file.write_text(ctx.home.config_file.read_text() + "require_known_agents = true\n")
    with pytest.raises(VerificationError):
        v.verify_action(token, action="deploy.run", resource="prod/web")


def test_the_guard_of_a_home_stops_allowing_an_agent_whose_authority_is_removed(tmp_path):
    pytest.importorskip("mcp")
    from agentctl.mcp import CallSigner, Guard
    from agentctl.recording import MemoryRecorder

    tool = _ctx(tmp_path / "tool", ROLES + '\n[roles.caller]\nscopes = ["mcp.call:files/*"]\n')
    keygen(tool, "user:alice", roles=("caller",))
    keygen(tool, "agent:bot")
    guard = Guard.for_home(tool.home, server="files", recorder=MemoryRecorder(), seen="memory", clock=tool.clock)
    grant, _ = delegate(tool, to="agent:bot", scopes=["mcp.call:files/*"], issuer="user:alice")
    caller = CallSigner(signer_for(tool, "agent:bot"), server="files", grant=grant, clock=tool.clock)
    guard.check("echo", {"n": 1}, caller.meta("echo", {"n": 1}))
    set_roles(tool, "user:alice", remove=("caller",))  # "alice no longer has the caller role"
    with pytest.raises(VerificationError) as e:
        guard.check("echo", {"n": 2}, caller.meta("echo", {"n": 2}))
    assert e.value.reason == "scope_escalation"


# --- the stamp itself ----------------------------------------------------------------------------


class CountingStore(Store):
    """A real store that counts the principal reads."""

    def __init__(self, home) -> None:
        super().__init__(home)
        self.reads = 0

    def get(self, name):
        self.reads += 1
        return super().get(name)


def test_an_unchanged_home_is_read_once_and_a_changed_stamp_reads_again(tool, monkeypatch):
    monkeypatch.setattr(trust_mod, "_RACY_NS", 0)
    monkeypatch.setattr(trust_mod, "_RACY_COARSE_NS", 0)
    store = CountingStore(tool.home)
    v = Verifier(StoreTrust(store), recorder=NO_AUDIT, clock=tool.clock)
    grant, _ = delegate(tool, to="agent:bot", scopes=["deploy.*:prod/*"], issuer="user:alice")
    v.verify_grant(grant, action="deploy.run", resource="prod/web")
    reads = store.reads
    for _ in range(5):
        v.verify_grant(grant, action="deploy.run", resource="prod/web")
    assert store.reads == reads  # nothing changed: nothing read again, the memo holds
    set_roles(tool, "user:alice", remove=("deployer",))
    pdir = tool.home.principals_dir
    os.utime(pdir, ns=(1_000_000_000_123, 1_000_000_000_123))  # a stamp that differs even within one clock tick
    assert _denied(v, "verify_grant", grant, action="deploy.run", resource="prod/web") == "scope_escalation"
    assert store.reads > reads


def test_a_static_trust_never_changes():
    from agentctl.verify import StaticTrust

    assert StaticTrust({}).changed() is False
    assert Verifier(StaticTrust({}), recorder=NO_AUDIT)._live is False


def test_a_stamp_too_recent_to_trust_is_read_again():
    now = 10**18 + 500_000_000
    fine = (now - 1_000_000, 0, 0, 0)
    assert trust_mod._racy((fine,), now)  # 1 ms ago: a next write may share the tick
    assert not trust_mod._racy(((now - 1_000_000_000, 0, 0, 0),), now)
    whole = ((now // 10**9 - 1) * 10**9, 0, 0, 0)  # a file system of whole seconds
    assert trust_mod._racy((whole,), now)
    assert trust_mod._racy(((now + 5_000_000_000, 0, 0, 0),), now)  # in the future
    assert not trust_mod._racy(((), ()), now)  # absent files


def test_a_write_that_changes_nothing_read_keeps_the_memo(tool):
    v = Verifier.for_home(tool.home, recorder=NO_AUDIT, clock=tool.clock)
    grant, _ = delegate(tool, to="agent:bot", scopes=["deploy.*:prod/*"], issuer="user:alice")
    v.verify_grant(grant, action="deploy.run", resource="prod/web")
    memo = v._cache[grant]
    keygen(tool, "agent:other")  # principals/ changed, nothing this verifier read did
    v.verify_grant(grant, action="deploy.run", resource="prod/web")
    assert v._cache[grant] is memo


def test_a_config_broken_while_running_fails_every_check_never_open(tool, monkeypatch):
    from agentctl.errors import Error

    monkeypatch.setattr(trust_mod, "_RACY_NS", 0)  # the stamp alone decides
    monkeypatch.setattr(trust_mod, "_RACY_COARSE_NS", 0)
    v = Verifier.for_home(tool.home, recorder=NO_AUDIT, clock=tool.clock)
    grant, _ = delegate(tool, to="agent:bot", scopes=["deploy.*:prod/*"], issuer="user:alice")
    v.verify_grant(grant, action="deploy.run", resource="prod/web")
    tool.home.config_file.write_text(ROLES + "[roles.deployer.bad\n")
    for _ in range(2):  # not once: every check until the file is fixed
        with pytest.raises(Error):
            v.verify_grant(grant, action="deploy.run", resource="prod/web")
    tool.home.config_file.write_text(ROLES)
    v.verify_grant(grant, action="deploy.run", resource="prod/web")
