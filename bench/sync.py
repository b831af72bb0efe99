"""``agentctl sync`` of unchanged sources against a local HTTPS server: requests and time.

    .venv/bin/python bench/sync.py [--runs 50]

It starts the standard library's HTTP server over TLS on 127.0.0.1 (a certificate made here, trusted
through ``SSL_CERT_FILE`` so that sync runs exactly as in production: ``sync(ctx)`` with its default
fetcher and the system's way of loading trust), an admin home that publishes a trust bundle and a
revocation list, and a tool home with both as ``[[sources]]``. After a first sync (both applied), it
times ``sync(ctx)`` in-process over and over with nothing changed, and counts what the server saw:
requests per source per sync, and whether each carried ``If-None-Match``; and what changed in the tool
home's files (nothing should). It prints figures and the ratio to the aim, and never fails.
Aim (issue 14): one conditional request per unchanged source, <= 5 ms against localhost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import ipaddress
import os
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AIM_MS = 5.0


def certificate(where: Path) -> Path:
    from cryptography import x509
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
    (where / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    (where / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return where / "cert.pem"


def serve(where: Path, routes: dict, log: Path, port_out) -> None:
    """An HTTPS server on 127.0.0.1 answering ``routes`` (path -> body) with an ETag and 304s, each
    request a line in ``log``. Runs in a child process, so it takes no CPU time from the sync timed."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as production web servers do (nginx: tcp_nodelay on)

        def log_message(self, *a):
            return None

        def do_GET(self):
            with log.open("a") as f:
                f.write(f"{self.path}\t{self.headers.get('If-None-Match') or ''}\t{self.headers.get('If-Modified-Since') or ''}\n")
            body = routes.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(where / "cert.pem", where / "key.pem")
    httpd.socket = sctx.wrap_socket(httpd.socket, server_side=True)
    port_out.put(httpd.server_address[1])
    httpd.serve_forever()


def requests(log: Path) -> list[list[str]]:
    return [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []


def files(path: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(path.rglob("*")) if p.is_file()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="agentctl-bench-sync-"))
    try:
        pem = certificate(base)
        os.environ["SSL_CERT_FILE"] = str(pem)  # the default context trusts the local server, as a system CA would
        os.environ.pop("SSL_CERT_DIR", None)
        from agentctl.context import Context
        from agentctl.encoding import did_key
        from agentctl.home import Home
        from agentctl.identity import keygen
        from agentctl.revocation_lists import export_list
        from agentctl.sync import sync
        from agentctl.trust_bundles import export_bundle

        import multiprocessing

        env = {"AGENTCTL_KEYSTORE": "file"}
        admin = Context(Home(base / "admin"), env=env)
        tool = Context(Home(base / "tool"), env=env)
        signer, _ = keygen(admin, "user:admin")
        for i in range(20):
            keygen(admin, f"agent:a{i}", roles=("deployer",))
        routes = {"/trust.jwt": export_bundle(admin, "user:admin")[0].encode(),
                  "/revs.jwt": export_list(admin, "user:admin")[0].encode()}
        log = base / "requests.log"
        mp = multiprocessing.get_context("fork")
        port_q = mp.Queue()
        child = mp.Process(target=serve, args=(base, routes, log, port_q), daemon=True)
        child.start()
        port = port_q.get(timeout=30)
        key = did_key(signer.current.public)
        tool.home.ensure()
        tool.home.config_file.write_text(
            f'[[sources]]\nkind = "trust"\nurl = "https://127.0.0.1:{port}/trust.jwt"\nsigner = "user:admin"\nkey = "{key}"\n'
            'names = ["agent:*"]\nroles = ["deployer"]\nmax_age = "1h"\n\n'
            f'[[sources]]\nkind = "revocations"\nurl = "https://127.0.0.1:{port}/revs.jwt"\nsigner = "user:admin"\nkey = "{key}"\n'
            'max_age = "1h"\n')
        tool.home._config = None
        first = sync(tool)
        print("first sync: " + ", ".join(f"{r.source.kind} {r.status}" for r in first))
        etag = '"' + hashlib.sha256(routes["/revs.jwt"]).hexdigest()[:16] + '"'
        cafile = ssl.create_default_context()

        def bare() -> None:  # the floor: one conditional GET on a new TLS connection, nothing else
            c = http.client.HTTPSConnection("127.0.0.1", port, context=cafile, timeout=10)
            c.request("GET", "/revs.jwt", headers={"If-None-Match": etag})
            assert c.getresponse().status == 304
            c.close()

        before = files(tool.home.path)
        log.unlink(missing_ok=True)
        times, floor = [], []
        for _ in range(args.runs):  # interleaved, so both see the same load
            t0 = time.perf_counter()
            results = sync(tool)
            times.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            bare()
            floor.append((time.perf_counter() - t0) * 1000)
        assert all(r.status == "current" for r in results), [r.status for r in results]
        after = files(tool.home.path)
        n = len(results)
        seen = requests(log)
        mine = len(seen) - args.runs  # the bare GETs are logged too
        conditional = sum(1 for r in seen if r[1]) - args.runs
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        ms, fl = statistics.median(times), statistics.median(floor)
        print(f"unchanged sync of {n} sources: {ms:.2f} ms per sync (median of {args.runs}), {ms / n:.2f} ms per source; "
              f"{mine / args.runs / n:.2f} request(s) per source per sync, {conditional}/{mine} conditional; "
              f"files changed in the home: {', '.join(changed) or 'none'}")
        print(f"floor: one bare conditional GET on a new TLS connection: {fl:.2f} ms; per source sync/floor: {ms / n / fl:.2f}x")
        print(f"per source now/aim: {ms / n / AIM_MS:.2f} (aim <= {AIM_MS:.0f} ms and one conditional request: "
              f"{'met' if ms / n <= AIM_MS and mine == args.runs * n and conditional == mine else 'not met'})")
        child.terminate()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
