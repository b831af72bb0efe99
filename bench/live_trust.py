"""What it costs a home's verifier to notice a change to the home's trust at every check.

    .venv/bin/python bench/live_trust.py [--n 20000] [--rounds 5]

A :class:`~agentctl.verify.Verifier` over a home asks its trust at every check whether the home's
principals directory or config.toml changed (a few stats). This measures, in one run and interleaved,
the same checks with that question asked (as shipped) and not asked (``_live`` switched off): the
in-process ``verify_grant`` of one memoized grant (the cheapest check, where the stats weigh most) and
``verify_action`` of distinct actions under that grant; and the question alone. CPU time
(``time.process_time``), best of ``--rounds``. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentctl.clock import FixedClock  # noqa: E402
from agentctl.context import Context  # noqa: E402
from agentctl.delegation import delegate  # noqa: E402
from agentctl.home import Home  # noqa: E402
from agentctl.identity import keygen  # noqa: E402
from agentctl.signers import signer_for  # noqa: E402
from agentctl.signing import sign_action_with  # noqa: E402
from agentctl.verify import NO_AUDIT, Verifier  # noqa: E402

T0 = 1_800_000_000
CONFIG = 'authority = "roles"\naudit = false\nkeystore = "file"\n\n[roles.deployer]\nscopes = ["deploy.*:prod/*"]\n'


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    import os

    with tempfile.TemporaryDirectory() as root:
        os.environ["AGENTCTL_KEYSTORE"] = "file"
        clock = FixedClock(T0)
        ctx = Context(Home(Path(root) / "tool"), clock=clock)
        ctx.home.ensure()
        ctx.home.config_file.write_text(CONFIG)
        ctx.home._config = None
        keygen(ctx, "user:alice", roles=("deployer",))
        keygen(ctx, "agent:bot")
        grant, _ = delegate(ctx, to="agent:bot", scopes=["deploy.*:prod/*"], issuer="user:alice")
        bot = signer_for(ctx, "agent:bot")
        actions = [sign_action_with(bot, action="deploy.run", resource=f"prod/w{i}", grant=grant, clock=clock)
                   for i in range(min(a.n, 2000))]
        time.sleep(0.2)  # past the window where a fresh write's timestamp is not trusted
        v = Verifier.for_home(ctx.home, recorder=NO_AUDIT, clock=clock)

        def grants():
            for _ in range(a.n):
                v.verify_grant(grant, action="deploy.run", resource="prod/web")

        def acts():
            for i in range(a.n):
                v.verify_action(actions[i % len(actions)])

        def asks():
            changed = v.trust.changed
            for _ in range(a.n):
                changed()

        best: dict = {}
        for _ in range(a.rounds):
            for live in (True, False):
                v._live = live
                for name, fn in (("grant", grants), ("action", acts)):
                    t = cpu(fn)
                    best[(name, live)] = min(best.get((name, live), t), t)
            t = cpu(asks)
            best["ask"] = min(best.get("ask", t), t)
        ask_us = best["ask"] / a.n * 1e6
        print(f"trust.changed() alone: {ask_us:.2f} us a check (2 stats)")
        for name in ("grant", "action"):
            on, off = best[(name, True)] / a.n * 1e6, best[(name, False)] / a.n * 1e6
            print(f"verify_{name:<6} live {on:7.2f} us   static {off:7.2f} us   live/static {on / off:.3f}  "
                  f"(+{on - off:.2f} us a check)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
