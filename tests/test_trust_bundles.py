"""Trust bundles: `trust export --sign-as NAME`, `trust import FILE`, and `[[sources]]` in config.toml."""

from __future__ import annotations

import json

import pytest

from agentctl import jws
from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.encoding import did_key
from agentctl.errors import DeniedError, UsageError, VerificationError
from agentctl.home import Home
from agentctl.identity import import_principal, keygen, rotate, signer_for
from agentctl.store import Store
from agentctl.trust_bundles import export_bundle, import_bundle

T0 = 1_800_000_000


@pytest.fixture
def homes(tmp_path):
    clock = FixedClock(T0)
    admin = Context(Home(tmp_path / "admin"), clock=clock)
    tool = Context(Home(tmp_path / "tool"), clock=clock)
    signer, _ = keygen(admin, "user:admin")
    keygen(admin, "agent:a1", roles=("deployer",))
    keygen(admin, "agent:a2")
    import_principal(tool, "user:admin", did_key(signer.current.public))
    tool.home.config_file.write_text(
        '[[sources]]\nkind = "trust"\nurl = "file:///nowhere/trust.jwt"\nsigner = "user:admin"\n'
        'names = ["agent:*"]\nroles = ["deployer"]\nmax_age = "1h"\n')
    return admin, tool


def test_export_shape_and_growing_version(homes):
    admin, _tool = homes
    rotate(admin, "agent:a1")
    token, version, count = export_bundle(admin, "user:admin")
    c = jws.decode(token, jws.TRUST, limit=jws.MAX_LIST_BYTES).claims
    assert version == 1 and count == 3 and c["version"] == 1 and c["iss"] == "user:admin"
    assert [p["name"] for p in c["principals"]] == ["agent:a1", "agent:a2", "user:admin"]
    a1 = c["principals"][0]
    assert a1["roles"] == ["deployer"] and len(a1["keys"]) == 2
    assert "retired" in a1["keys"][0] and "retired" not in a1["keys"][1]
    assert export_bundle(admin, "user:admin")[1] == 2


def test_import_applies_replaces_and_shows_changes(homes):
    admin, tool = homes
    b, ch = import_bundle(tool, export_bundle(admin, "user:admin")[0])
    assert ch.added == ("agent:a1", "agent:a2") and not ch.removed
    a1 = Store(tool.home).get("agent:a1")
    assert a1.origin == "imported" and a1.roles == ("deployer",)
    # agent:a2 leaves the admin home: the next bundle no longer lists it, so it is no longer trusted
    Store(admin.home).delete("agent:a2")
    b, ch = import_bundle(tool, export_bundle(admin, "user:admin")[0])
    assert ch.removed == ("agent:a2",) and Store(tool.home).get("agent:a2") is None
    assert not Store(tool.home).revocations().principal("agent:a2")  # not a revocation
    rotate(admin, "agent:a1")
    b, ch = import_bundle(tool, export_bundle(admin, "user:admin")[0])
    assert ch.changed == ("agent:a1",) and len(Store(tool.home).get("agent:a1").keys) == 2


def test_rollback_and_equivocation(homes):
    admin, tool = homes
    old = export_bundle(admin, "user:admin")[0]
    import_bundle(tool, export_bundle(admin, "user:admin")[0])
    with pytest.raises(VerificationError) as e:
        import_bundle(tool, old)
    assert e.value.reason == "replayed"
    c = jws.decode(export_bundle(admin, "user:admin")[0], jws.TRUST).claims
    c["version"] = 2
    with pytest.raises(DeniedError) as e:
        import_bundle(tool, jws.encode(jws.TRUST, c, signer_for(admin, "user:admin").seed))
    assert "equivocation" in e.value.message


def _bundle_with(admin, entry: dict) -> str:
    c = jws.decode(export_bundle(admin, "user:admin")[0], jws.TRUST).claims
    c["principals"] = sorted(c["principals"] + [entry], key=lambda p: p["name"])
    return jws.encode(jws.TRUST, c, signer_for(admin, "user:admin").seed)


@pytest.mark.parametrize("what", ["local", "name", "role", "key"])
def test_what_a_source_may_not_define_is_refused_never_merged(homes, what):
    admin, tool = homes
    local, _ = keygen(tool, "agent:local")
    seed = signer_for(admin, "agent:a2").seed
    from agentctl import crypto
    from agentctl.encoding import jwk

    key = {"jwk": jwk(crypto.public_key(crypto.new_seed())), "added": "2027-01-01T00:00:00Z"}
    entry = {
        "local": {"name": "agent:local", "roles": [], "attrs": {}, "keys": [key]},
        "name": {"name": "user:mallory", "roles": [], "attrs": {}, "keys": [key]},
        "role": {"name": "agent:b", "roles": ["root"], "attrs": {}, "keys": [key]},
        "key": {"name": "agent:b", "roles": [], "attrs": {}, "keys": [{"jwk": jwk(local.current.public), "added": "2027-01-01T00:00:00Z"}]},
    }[what]
    del seed
    before = {p.name: p for p in Store(tool.home).all()}
    with pytest.raises(DeniedError) as e:
        import_bundle(tool, _bundle_with(admin, entry))
    assert e.value.message.startswith("conflict:")
    assert {p.name: p for p in Store(tool.home).all()} == before  # nothing applied


def test_only_a_trust_source_signer_may_publish(homes, tmp_path):
    admin, tool = homes
    bob, _ = keygen(admin, "user:bob")
    import_principal(tool, "user:bob", did_key(bob.current.public))
    with pytest.raises(VerificationError) as e:
        import_bundle(tool, export_bundle(admin, "user:bob")[0])
    assert e.value.reason == "untrusted_root" and "trust source" in e.value.detail


def test_another_sources_names_are_refused(homes):
    admin, tool = homes
    first = export_bundle(admin, "user:admin")[0]
    bob, _ = keygen(admin, "user:bob")
    import_principal(tool, "user:bob", did_key(bob.current.public))
    text = tool.home.config_file.read_text()
    tool.home.config_file.write_text(text + '\n[[sources]]\nkind = "trust"\nurl = "file:///nowhere/bob.jwt"\nsigner = "user:bob"\nnames = ["agent:*"]\nroles = ["deployer"]\n')
    import_bundle(tool, first)
    with pytest.raises(DeniedError) as e:
        import_bundle(tool, export_bundle(admin, "user:bob")[0])
    assert "held from another source" in e.value.message


@pytest.mark.parametrize("config, message", [
    ('[[sources]]\nkind = "trust"\nurl = "http://x.example/t.jwt"\nsigner = "user:a"\n', "use https:// or file://"),
    ('[[sources]]\nkind = "trust"\nurl = "https://x.example/t.jwt"\nsigner = "user:a"\ncolour = "red"\n', "unknown key 'colour'"),
    ('[[sources]]\nkind = "keys"\nurl = "https://x.example/t.jwt"\nsigner = "user:a"\n', "bad kind"),
    ('[[sources]]\nkind = "revocations"\nurl = "https://x.example/t.jwt"\nsigner = "user:a"\nnames = ["agent:*"]\n', "belong to trust sources"),
    ('[[sources]]\nkind = "trust"\nurl = "https://u:pw@x.example/t.jwt"\nsigner = "user:a"\n', "credentials"),
    ('[[sources]]\nkind = "trust"\nurl = "https://x.example/t.jwt"\nsigner = "user:a"\nkey = "did:key:zNope"\n', "bad key"),
    ('[[sources]]\nkind = "trust"\nurl = "https://x.example/t.jwt"\n', "no 'signer'"),
])
def test_bad_sources_are_usage_errors(tmp_path, config, message):
    home = Home(tmp_path / "h")
    home.ensure()
    home.config_file.write_text(config)
    with pytest.raises(UsageError) as e:
        home.config
    assert message in e.value.message and "pw" not in e.value.message.replace("https://u:pw", "")


def test_cli_export_import_sync_and_audit(cli, tmp_path):
    admin, tool = tmp_path / "admin", tmp_path / "tool"
    did = cli("--home", str(admin), "keygen", "user:admin").stdout.strip()
    assert cli("--home", str(admin), "keygen", "agent:a1", "--role", "deployer").code == 0
    bundle = tmp_path / "trust.jwt"
    r = cli("--home", str(admin), "--json", "trust", "export", "--sign-as", "user:admin", "-o", str(bundle))
    assert r.code == 0 and r.json()["version"] == 1, r.stderr
    tool.mkdir(mode=0o700)
    (tool / "config.toml").write_text(
        f'[[sources]]\nkind = "trust"\nurl = "file://{bundle}"\nsigner = "user:admin"\nkey = "{did}"\nnames = ["agent:*"]\nroles = ["deployer"]\n')
    r = cli("--home", str(tool), "--json", "sync")
    assert r.code == 0, r.stderr
    assert r.json()["sources"][0]["status"] == "updated" and r.json()["sources"][0]["changes"]["added"] == ["agent:a1"]
    r = cli("--home", str(tool), "--json", "sync")
    assert r.code == 0 and r.json()["sources"][0]["status"] == "current"
    r = cli("--home", str(tool), "--json", "trust", "import", str(bundle))
    assert r.code == 0 and r.json()["unchanged"] is True
    events = cli("--home", str(tool), "--json", "audit", "--limit", "10").json()
    kinds = [e["event"] for e in (events["events"] if isinstance(events, dict) else events)]
    assert "sync" in kinds and "trust.import" in kinds
    bundle.write_text("garbage\n")
    r = cli("--home", str(tool), "sync")
    assert r.code == 1 and "refused" in r.stderr
    bundle.unlink()
    r = cli("--home", str(tool), "sync")
    assert r.code == 3 and "unreachable" in r.stderr and "no such file" in r.stderr
    json.dumps(r.stdout)


def test_cli_import_reads_at_most_8_mib(cli, tmp_path):
    big = tmp_path / "big.jwt"
    big.write_bytes(b"a" * (8 * 1024 * 1024 + 1))
    r = cli("--home", str(tmp_path / "h"), "trust", "import", str(big))
    assert r.code == 2 and "larger than" in r.stderr
