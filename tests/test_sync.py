"""`agentctl sync` against a real HTTPS server on 127.0.0.1 (the standard library's, with a certificate
made for the test): conditional requests, a hanging server, garbage, rollback, equivocation, a server
that goes away, redirects, oversize bodies, pins; and freshness (signed time) in verification step 6.
Time is the clock seam: nothing sleeps."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agentctl import jws
from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.encoding import did_key
from agentctl.errors import VerificationError
from agentctl.fetch import Fetcher
from agentctl.home import Home
from agentctl.identity import keygen, rotate
from agentctl.revocation_lists import export_list
from agentctl.sources import Source
from agentctl.store import Store
from agentctl.sync import exit_code, sync, sync_source
from agentctl.trust_bundles import export_bundle
from agentctl.verify import NO_AUDIT, Verifier

from helpers_tokens import ACTION, header, jws as forge, new_jti

x509 = pytest.importorskip("cryptography.x509", reason="the HTTPS tests make a certificate with the cryptography package")

T0 = 1_800_000_000


# --- a real HTTPS server ----------------------------------------------------------------------------

def _certificate(where: Path) -> Path:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = where / "server.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
                    + cert.public_bytes(serialization.Encoding.PEM))
    return pem


class Server:
    """Routes: path -> ("body", bytes) | ("redirect", location) | ("status", code) | ("hang",)."""

    def __init__(self, where: Path) -> None:
        self.pem = _certificate(where)
        self.routes: dict = {}
        self.requests: list = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                return None

            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path, ("status", 404))
                if route[0] == "hang":
                    server.release.wait(30)
                    return
                if route[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", route[1])
                    self.end_headers()
                    return
                if route[0] == "status":
                    self.send_response(route[1])
                    self.end_headers()
                    return
                body = route[1]
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(self.pem)
        self.httpd.socket = sctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def fetcher(self, **kw) -> Fetcher:
        return Fetcher(context=ssl.create_default_context(cafile=str(self.pem)), **kw)

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


# --- an admin home publishing, a verifier home syncing -------------------------------------------------

class Fleet:
    def __init__(self, tmp: Path, server: Server) -> None:
        self.clock = FixedClock(T0)
        self.server = server
        self.admin = Context(Home(tmp / "admin"), clock=self.clock)
        self.tool = Context(Home(tmp / "tool"), clock=self.clock)
        self.signer, _ = keygen(self.admin, "user:admin")
        keygen(self.admin, "agent:a1", roles=("deployer",))
        self.did = did_key(self.signer.current.public)
        self.configure()

    def configure(self, extra: str = "", trust_url: str = "/trust.jwt", revs_url: str = "/revs.jwt", key: str | None = None) -> None:
        self.tool.home.ensure()
        key = key or self.did
        self.tool.home.config_file.write_text(
            f'[[sources]]\nkind = "trust"\nurl = "{self.server.url(trust_url)}"\nsigner = "user:admin"\nkey = "{key}"\n'
            f'names = ["agent:*"]\nroles = ["deployer"]\nmax_age = "1h"\n{extra}\n'
            f'[[sources]]\nkind = "revocations"\nurl = "{self.server.url(revs_url)}"\nsigner = "user:admin"\nkey = "{key}"\n'
            f'max_age = "1h"\n{extra}\n')
        self.tool.home._config = None

    def publish(self) -> tuple[str, str]:
        bundle, _, _ = export_bundle(self.admin, "user:admin")
        revs, _, _ = export_list(self.admin, "user:admin")
        self.server.routes["/trust.jwt"] = ("body", bundle.encode())
        self.server.routes["/revs.jwt"] = ("body", revs.encode())
        return bundle, revs

    def sync(self, **kw):
        return sync(self.tool, fetcher=self.server.fetcher(**kw))

    def source(self, kind: str) -> Source:
        return next(s for s in self.tool.home.config.sources if s.kind == kind)


@pytest.fixture
def fleet(tmp_path, server):
    return Fleet(tmp_path, server)


def statuses(results) -> list:
    return [(r.source.kind, r.status, r.reason) for r in results]


def test_first_sync_pins_the_signer_and_applies_both_sources(fleet):
    fleet.publish()
    results = fleet.sync()
    assert statuses(results) == [("trust", "updated", None), ("revocations", "updated", None)] and exit_code(results) == 0
    store = Store(fleet.tool.home)
    signer = store.get("user:admin")
    assert signer.origin == "imported" and signer.current.public == fleet.signer.current.public
    a1 = store.get("agent:a1")
    assert a1.origin == "imported" and a1.roles == ("deployer",)
    assert results[0].changes["added"] == ["agent:a1"]


def test_unchanged_source_is_one_conditional_request_and_refreshes_nothing(fleet):
    fleet.publish()
    fleet.sync()
    fleet.server.requests.clear()
    fleet.clock.advance(50 * 60)
    results = fleet.sync()
    assert statuses(results) == [("trust", "current", None), ("revocations", "current", None)]
    assert len(fleet.server.requests) == 2 and all("If-None-Match" in h for _p, h in fleet.server.requests)
    fleet.clock.advance(20 * 60)  # 70 minutes after the lists were signed: a 304 made nothing fresher
    from agentctl.sources import stale_denial

    denial = stale_denial(fleet.tool.home, fleet.tool.home.config.sources, fleet.clock())
    assert denial.reason == "stale_trust" and fleet.server.url("/trust.jwt") in denial.detail


def test_rollback_and_equivocation_are_refused_and_the_last_good_copy_stays(fleet):
    old_bundle, old_revs = fleet.publish()
    fleet.sync()
    fleet.publish()
    assert statuses(fleet.sync())[0][1] == "updated"
    fleet.server.routes["/trust.jwt"] = ("body", old_bundle.encode())  # version 1 again
    fleet.server.routes["/revs.jwt"] = ("body", old_revs.encode())
    results = fleet.sync()
    assert statuses(results) == [("trust", "refused", "replayed"), ("revocations", "refused", "replayed")]
    assert exit_code(results) == 1
    # the same version 2, re-signed: equivocation
    c = jws.decode(export_bundle(fleet.admin, "user:admin")[0], jws.TRUST).claims
    c["version"] = 2
    from agentctl.identity import signer_for

    forged = jws.encode(jws.TRUST, c, signer_for(fleet.admin, "user:admin").seed)
    fleet.server.routes["/trust.jwt"] = ("body", forged.encode())
    r = sync_source(fleet.tool, fleet.source("trust"), fetcher=fleet.server.fetcher())
    assert r.status == "refused" and "equivocation" in r.detail
    assert Store(fleet.tool.home).get("agent:a1") is not None  # what was held stays


def test_garbage_and_the_wrong_kind_are_refused(fleet):
    fleet.publish()
    fleet.server.routes["/trust.jwt"] = ("body", b"<html>hello</html>")
    bundle = export_bundle(fleet.admin, "user:admin")[0]
    fleet.server.routes["/revs.jwt"] = ("body", bundle.encode())  # a trust bundle where a list belongs
    results = fleet.sync()
    assert statuses(results) == [("trust", "refused", "malformed"), ("revocations", "refused", "malformed")]
    assert Store(fleet.tool.home).get("user:admin") is None  # nothing was pinned for what was refused


def test_a_server_that_hangs_is_unreachable_within_the_timeout(fleet):
    fleet.server.routes["/trust.jwt"] = ("hang",)
    s = Source("trust", fleet.server.url("/trust.jwt"), "user:admin", fleet.signer.current.public, ("agent:*",), (), 3600, False, 1)
    r = sync_source(fleet.tool, s, fetcher=fleet.server.fetcher())
    assert r.status == "unreachable" and "timed out" in r.detail
    assert exit_code([r]) == 3


def test_a_server_that_goes_away_keeps_the_last_good_copy_until_max_age(fleet):
    fleet.publish()
    fleet.sync()
    fleet.server.stop()
    fleet.clock.advance(30 * 60)
    results = fleet.sync()
    assert {r.status for r in results} == {"unreachable"} and exit_code(results) == 3
    assert Store(fleet.tool.home).get("agent:a1") is not None
    keygen(fleet.tool, "user:bob")
    action = _action(fleet, "user:bob")
    verifier = Verifier.for_home(fleet.tool.home, recorder=NO_AUDIT, clock=fleet.clock)
    verifier.verify(action)  # fresh enough: 30 minutes
    fleet.clock.advance(31 * 60)
    with pytest.raises(VerificationError) as e:
        Verifier.for_home(fleet.tool.home, recorder=NO_AUDIT, clock=fleet.clock).verify(_action(fleet, "user:bob"))
    assert e.value.reason == "stale_trust"
    assert "last fetch error" in e.value.detail and "2027-01-15T08:00:00Z" in e.value.detail


def _action(fleet: Fleet, name: str) -> str:
    from agentctl.identity import signer_for

    seed = signer_for(fleet.tool, name).seed
    now = int(fleet.clock())
    claims = {"iss": name, "sub": name, "action": "deploy.staging", "resource": "api/web", "iat": now, "exp": now + 60,
              "jti": new_jti(), "payload": {"sha256": hashlib.sha256(b"").hexdigest()}}
    return forge(header(seed, typ=ACTION), claims, seed)


def test_never_synced_is_stale_and_refresh_fetches_once_before_deciding(fleet):
    keygen(fleet.tool, "user:bob")
    with pytest.raises(VerificationError) as e:
        Verifier.for_home(fleet.tool.home, recorder=NO_AUDIT, clock=fleet.clock).verify(_action(fleet, "user:bob"))
    assert e.value.reason == "stale_trust" and "nothing was ever accepted" in e.value.detail
    assert fleet.server.requests == []  # verify fetches nothing without refresh = true
    fleet.configure(extra="refresh = true")
    fleet.publish()
    from agentctl.verify import StoreTrust

    trust = StoreTrust(Store(fleet.tool.home), refresh=True, fetcher=fleet.server.fetcher())
    Verifier(trust, recorder=NO_AUDIT, clock=fleet.clock).verify(_action(fleet, "user:bob"))
    assert len(fleet.server.requests) == 2


def test_stale_revocations_deny(fleet):
    fleet.publish()
    fleet.sync()
    keygen(fleet.tool, "user:bob")
    fleet.clock.advance(2 * 3600)
    bundle = export_bundle(fleet.admin, "user:admin")[0]
    fleet.server.routes["/trust.jwt"] = ("body", bundle.encode())  # trust re-signed, the list not
    fleet.sync()
    with pytest.raises(VerificationError) as e:
        Verifier.for_home(fleet.tool.home, recorder=NO_AUDIT, clock=fleet.clock).verify(_action(fleet, "user:bob"))
    assert e.value.reason == "stale_revocations" and fleet.server.url("/revs.jwt") in e.value.detail


def test_redirects(fleet):
    fleet.publish()
    for i in range(5):
        fleet.server.routes[f"/r{i}"] = ("redirect", f"/r{i + 1}" if i < 4 else "/trust.jwt")
    s = Source("trust", fleet.server.url("/r0"), "user:admin", fleet.signer.current.public, ("agent:*",), ("deployer",), 3600)
    assert sync_source(fleet.tool, s, fetcher=fleet.server.fetcher()).status == "updated"  # five redirects
    fleet.server.routes["/loop"] = ("redirect", "/loop")
    s6 = Source("trust", fleet.server.url("/loop"), "user:admin", None, ("agent:*",), (), 3600)
    r = sync_source(fleet.tool, s6, fetcher=fleet.server.fetcher())
    assert r.status == "refused" and "more than 5 redirects" in r.detail
    fleet.server.routes["/down"] = ("redirect", f"http://127.0.0.1:{fleet.server.port}/trust.jwt")
    s7 = Source("trust", fleet.server.url("/down"), "user:admin", None, ("agent:*",), (), 3600)
    r = sync_source(fleet.tool, s7, fetcher=fleet.server.fetcher())
    assert r.status == "refused" and "http://" in r.detail


def test_oversize_is_refused(fleet):
    fleet.publish()
    r = sync_source(fleet.tool, fleet.source("trust"), fetcher=fleet.server.fetcher(limit=100))
    assert r.status == "refused" and "at most 100" in r.detail


def test_a_server_serving_another_signer_key_is_refused_on_first_sync(fleet, tmp_path):
    mallory = Context(Home(tmp_path / "mallory"), clock=fleet.clock)
    keygen(mallory, "user:admin")  # the same name, another key
    keygen(mallory, "agent:a1", roles=("deployer",))
    fleet.server.routes["/trust.jwt"] = ("body", export_bundle(mallory, "user:admin")[0].encode())
    fleet.server.routes["/revs.jwt"] = ("body", export_list(mallory, "user:admin")[0].encode())
    results = fleet.sync()
    assert statuses(results) == [("trust", "refused", "unknown_key"), ("revocations", "refused", "unknown_key")]
    assert Store(fleet.tool.home).get("agent:a1") is None and Store(fleet.tool.home).get("user:admin") is None


def test_a_changed_pin_is_refused(fleet):
    fleet.publish()
    fleet.sync()
    other = did_key(bytes.fromhex("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"))
    fleet.configure(key=other)
    fleet.publish()
    results = fleet.sync()
    assert {r.status for r in results} == {"refused"} and "rotation statement" in results[0].detail


def test_a_list_revoking_its_own_signer_is_its_last(fleet):
    from agentctl.identity import signer_for

    fleet.publish()
    fleet.sync()
    seed = signer_for(fleet.admin, "user:admin").seed
    c = {"iss": "user:admin", "iat": int(fleet.clock()), "jti": new_jti(), "version": 5,
         "revoked": {"principals": [{"id": "user:admin", "at": "2027-01-15T08:00:00Z"}], "keys": [], "grants": []}}
    fleet.server.routes["/revs.jwt"] = ("body", jws.encode(jws.REVOCATIONS, c, seed).encode())
    r = sync_source(fleet.tool, fleet.source("revocations"), fetcher=fleet.server.fetcher())
    assert r.status == "updated" and r.self_revoked and r.describe()["self_revoked"] is True
    c["version"], c["jti"] = 6, new_jti()
    fleet.server.routes["/revs.jwt"] = ("body", jws.encode(jws.REVOCATIONS, c, seed).encode())
    r = sync_source(fleet.tool, fleet.source("revocations"), fetcher=fleet.server.fetcher())
    assert r.status == "refused" and r.reason == "revoked"


def test_a_bundle_or_list_signed_by_a_retired_key_is_refused(fleet):
    from agentctl.identity import signer_for

    fleet.publish()
    fleet.sync()
    old_seed = signer_for(fleet.admin, "user:admin").seed
    _p, statement, _s = rotate(fleet.admin, "user:admin")
    from agentctl.identity import import_rotation

    import_rotation(fleet.tool, "user:admin", statement)
    c = jws.decode(export_bundle(fleet.admin, "user:admin")[0], jws.TRUST).claims
    c["iat"] = int(fleet.clock()) - 10  # even dated before the retirement
    fleet.server.routes["/trust.jwt"] = ("body", jws.encode(jws.TRUST, c, old_seed).encode())
    r = sync_source(fleet.tool, fleet.source("trust"), fetcher=fleet.server.fetcher())
    assert r.status == "refused" and r.reason == "bad_signature" and "retired" in r.detail
