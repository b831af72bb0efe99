"""The worked fleet of docs/fleet.md, end to end, in CLI calls: an admin home, two tool-server homes,
one agent machine, a real HTTPS server on 127.0.0.1 serving what the admin publishes, and a real
PostgreSQL holding the fleet's audit.

Every home runs on one FixedClock (the clock seam: nothing sleeps); the tool servers trust the test's
self-signed certificate through SSL_CERT_FILE, as a system trust store would."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg") if os.environ.get("CI") != "true" else __import__("psycopg")

from agentctl.clock import FixedClock  # noqa: E402
from agentctl.context import Context  # noqa: E402
from test_ship import Fleet as Store  # noqa: E402
from test_ship_attacks import _rewrite_local_event  # noqa: E402
from test_sync import Server  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "fleet.md"



class World:
    """The homes, the web server, the central store and the one clock they all read."""

    def __init__(self, tmp: Path, cli, server: Server, store: Store, clock: FixedClock) -> None:
        self.tmp, self.cli, self.server, self.store, self.clock = tmp, cli, server, store, clock
        self.www = tmp / "www"
        self.www.mkdir()
        self.ran: set[tuple[str, ...]] = set()

    def run(self, home: str, *args: str):
        words = [a for a in args if not a.startswith("-")]
        self.ran.add(tuple(words[:2]) if words and words[0] in ("trust", "revocations", "audit") else tuple(words[:1]))
        return self.cli("--home", str(self.tmp / home), *args)

    def ok(self, home: str, *args: str) -> str:
        r = self.run(home, *args)
        assert r.code == 0, (home, args, r.code, r.stderr)
        assert "Traceback" not in r.stderr
        return r.stdout

    def publish(self) -> None:
        """What a static web server does with the admin's files."""
        for name in ("trust.jwt", "revocations.jwt"):
            self.server.routes[f"/{name}"] = ("body", (self.www / name).read_bytes())

    def sync(self, home: str) -> list[tuple[str, str, str | None]]:
        r = self.run(home, "--json", "sync")
        doc = r.json()
        assert r.code == doc["exit_code"]
        return [(s["kind"], s["status"], s.get("reason")) for s in doc["sources"]]

    def sign(self, as_: str, out: str) -> Path:
        path = self.tmp / out
        self.ok("agent", "sign", "--as", as_, "--action", "deploy.staging", "--resource", "api/web",
                "--data", str(self.tmp / "payload.json"), "-o", str(path))
        return path

    def verify(self, home: str, action: Path) -> tuple[int, str | None, str]:
        r = self.run(home, "--json", "verify", str(action), "--action", "deploy.staging", "--resource", "api/web",
                     "--data", str(self.tmp / "payload.json"))
        doc = r.json()
        assert "Traceback" not in r.stderr
        return r.code, doc.get("reason"), doc.get("message", "")


@pytest.fixture
def world(tmp_path, cli, pg_cluster, monkeypatch):
    clock = FixedClock(float(int(time.time())))
    # the CLI builds every context with Context.for_home: give each one the test's clock
    plain = Context.for_home.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Context, "for_home", classmethod(lambda cls, home=None, **kw: plain(cls, home, **{"clock": clock, **kw})))
    server = Server(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.pem))
    store = Store(pg_cluster, cli, tmp_path, monkeypatch)
    yield World(tmp_path, cli, server, store, clock)
    server.stop()


def test_the_worked_fleet(world):
    w, clock = world, world.clock
    (w.tmp / "payload.json").write_text('{"image": "web:1.4.2"}\n')

    # --- the admin home and the agent machine ---------------------------------------------------------
    w.ok("admin", "keygen", "user:admin")
    w.ok("agent", "keygen", "agent:deployer")
    w.ok("agent", "keygen", "agent:builder")
    for agent in ("agent:deployer", "agent:builder"):
        w.ok("admin", "import", agent, w.ok("agent", "pubkey", agent).strip(), "--role", "deployer")

    def export() -> None:
        w.ok("admin", "trust", "export", "--sign-as", "user:admin", "-o", str(w.www / "trust.jwt"))
        w.ok("admin", "revocations", "export", "--sign-as", "user:admin", "-o", str(w.www / "revocations.jwt"))
        w.publish()

    export()

    # --- two tool servers pin the admin's key and sync -------------------------------------------------
    pin = w.ok("admin", "pubkey", "user:admin").strip()
    assert pin.startswith("did:key:z6Mk")
    tools = ("tool1", "tool2")
    for t in tools:
        (w.tmp / t).mkdir(mode=0o700)
        (w.tmp / t / "config.toml").write_text(_doc_tool_config(base=w.server.url(""), pin=pin))
        # before the first sync the agent is nobody here
        code, reason, _ = w.verify(t, w.sign("agent:deployer", "early.txt"))
        assert (code, reason) == (1, "untrusted_root")
        assert w.sync(t) == [("trust", "updated", None), ("revocations", "updated", None)]
        assert w.sync(t) == [("trust", "current", None), ("revocations", "current", None)]

    # --- the agent acts; both verify --------------------------------------------------------------------
    action = w.sign("agent:deployer", "action.txt")
    for t in tools:
        assert w.verify(t, action)[:2] == (0, None)
    clock.advance(60)

    # --- the admin revokes the agent and republishes; both deny after their next sync ------------------
    w.ok("admin", "revoke", "agent:deployer", "--reason", "key leaked")
    w.ok("admin", "revocations", "export", "--sign-as", "user:admin", "-o", str(w.www / "revocations.jwt"))
    w.publish()
    action = w.sign("agent:deployer", "after-revoke.txt")  # the agent's own home still signs
    assert w.verify("tool1", action)[:2] == (0, None)  # not yet synced: the window max_age bounds
    for t in tools:
        assert w.sync(t) == [("trust", "current", None), ("revocations", "updated", None)]
        code, reason, message = w.verify(t, action)
        assert (code, reason) == (1, "revoked") and "agent:deployer" in message
    other = w.sign("agent:builder", "builder.txt")
    assert all(w.verify(t, other)[:2] == (0, None) for t in tools)  # the other agent is unaffected

    # --- a stale list denies; fetching the same list again makes nothing fresher ----------------------
    clock.advance(16 * 60)  # the list was signed 16 minutes ago; max_age is 15m
    other = w.sign("agent:builder", "builder-late.txt")
    for t in tools:
        code, reason, message = w.verify(t, other)
        assert (code, reason) == (1, "stale_revocations") and w.server.url("/revocations.jwt") in message
        assert w.sync(t) == [("trust", "current", None), ("revocations", "current", None)]  # a 304
        assert w.verify(t, other)[:2] == (1, "stale_revocations")
    # the same bytes served without validators (a mirror that ignores If-None-Match) do no better
    w.server.routes["/revocations.jwt"] = ("body", (w.www / "revocations.jwt").read_bytes() + b"\n")
    assert w.sync("tool1")[1] == ("revocations", "current", None)
    assert w.verify("tool1", other)[:2] == (1, "stale_revocations")
    # the admin's timer re-signs (nothing changed): fresh again, and the revocation still holds
    export()
    for t in tools:
        assert w.sync(t) == [("trust", "updated", None), ("revocations", "updated", None)]
        assert w.verify(t, other)[:2] == (0, None)
        # the new bundle leaves the revoked agent out: it is nobody here now, and its revocation stays held
        assert w.verify(t, action)[:2] == (1, "untrusted_root")

    # --- both tool servers ship their audit to PostgreSQL ---------------------------------------------
    urls = {}
    for t in tools:
        _home, urls[t] = w.store.home(t, events=0)  # audit key, enrolled by the store's owner
        r = w.run(t, "--json", "audit", "ship", "--to", urls[t])
        assert r.code == 0, r.stderr
        assert r.json()["events"] > 0 and r.json()["size"] == r.json()["checkpoint_size"]
    w.ran |= {("audit", "key"), ("audit", "enroll"), ("audit",), ("audit", "verify")}  # by the store's owner and readers

    # --- the fleet query: one agent's actions across hosts, newest first ------------------------------
    r = w.cli("--json", "audit", "--from", w.store.owner, "--agent", "agent:deployer")
    assert r.code == 0, r.stderr
    events = r.json()["events"]
    assert events and {e["principal"] for e in events} == {"agent:deployer"}
    assert len({e["origin"] for e in events}) == 2  # both tool servers
    assert [e["time"] for e in events] == sorted((e["time"] for e in events), reverse=True)
    assert {e["outcome"] for e in events} == {"allow", "deny"}
    assert "revoked" in {e.get("reason") for e in events}
    state = w.tmp / "reader-state"
    r = w.cli("--json", "audit", "verify", "--from", w.store.owner, "--state", str(state))
    assert r.code == 0, r.stderr
    assert len(r.json()["logs"]) == 2 and all(log["ok"] for log in r.json()["logs"])

    # --- tool1's log edited after shipping: the next ship refuses it ----------------------------------
    _rewrite_local_event(w.tmp / "tool1", 2)
    assert w.verify("tool1", other)[0] == 0  # a new event, so there is something to ship
    r = w.run("tool1", "--json", "audit", "ship", "--to", urls["tool1"])
    assert r.code == 1 and "fork" in r.json()["message"] and "first at event 2" in r.json()["message"]
    r = w.cli("--json", "audit", "verify", "--from", w.store.owner, "--state", str(state))
    assert r.code == 0  # the store still holds the history as shipped
    # ... and the same edit made in the store (by its owner) is named by every reader
    w.store.sql("UPDATE agentctl_audit.events SET leaf = replace(leaf, '\"ok\"', '\"error\"') WHERE seq = 2 "
                "AND log_id = (SELECT l.id FROM agentctl_audit.logs l JOIN agentctl_audit.hosts h ON h.key = l.key "
                "WHERE h.role = %s)", (urls["tool1"].split("//")[1].split("@")[0],))
    r = w.cli("--json", "audit", "verify", "--from", w.store.owner, "--state", str(state))
    assert r.code == 1
    bad = [log for log in r.json()["logs"] if not log["ok"]]
    assert len(bad) == 1 and bad[0]["seq"] == 2 and "altered" in bad[0]["problem"]

    # the doc's worked fleet shows exactly the commands this test runs
    assert _doc_commands() == w.ran


def _section() -> str:
    return DOC.read_text("utf-8").split("\n## A worked fleet\n", 1)[1].split("\n## ", 1)[0]


def _doc_tool_config(base: str, pin: str) -> str:
    """The tool servers' config.toml as the doc shows it, pointed at the test's server and pin."""
    block = next(b for b in re.findall(r"^```toml\n(.*?)^```", _section(), re.S | re.M) if "[[sources]]" in b)
    assert block.count('key = "did:key:z6Mk…"') == 2 and block.count("https://admin.internal/") == 2
    return block.replace("did:key:z6Mk…", pin).replace("https://admin.internal", base)


def _doc_commands() -> set[tuple[str, ...]]:
    found = set()
    for block in re.findall(r"^```sh\n(.*?)^```", _section(), re.S | re.M):
        for m in re.finditer(r"\bagentctl(?: --home \S+)?(?: --json)? ([a-z-]+)(?: ([a-z][a-z-]*))?", block):
            first, second = m.groups()
            found.add((first, second) if first in ("trust", "revocations", "audit") and second else (first,))
    return found
