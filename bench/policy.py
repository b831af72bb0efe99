"""Decisions per second per engine: a compiled set asked through agentctl's interface, against a
fresh engine query per decision; then, for Rego, where a decision's time goes (the evaluation on the
caller's thread, without the time-out hand-off; regopy's conversion of the input document alone) and
what compiling a set costs with the safety check. Last, verification with a compiled policy against
without one, per decision, in the library (``Verifier(policies=…)``) and in ``agentctl verify --batch
--policy`` (CPU time, best of interleaved rounds; the audit log off, so the policy's share shows).
Target: at most 0.1 ms added per decision. Run: python bench/policy.py [N] [ACTIONS]"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


from agentctl._cli.demo import SEED_POLICY as REGO  # noqa: E402 - SPEC's seed policy (test_policy_docs checks it is SPEC's text)
CEDAR = """permit(principal == Agentctl::Agent::"agent:code-reviewer:prod",
       action == Agentctl::Action::"pull_request.create", resource)
when { context has delegation && context.delegation.user in Agentctl::Role::"engineer"
       && resource has repo && resource.repo like "acme/*" };
"""


def doc() -> dict:
    from agentctl.policy.input import Delegation, Hop, build_input

    return build_input(
        agent_id="agent:code-reviewer:prod", agent_kid="k", agent_known=True, agent_roles=["reviewer"], action="pull_request.create",
        resource_id="acme/api", approval=None, token={"type": "action", "jti": "a", "iat": 0, "exp": 1}, payload=None,
        delegation=Delegation("user:alice", (Hop("user:alice", "agent:code-reviewer:prod", ("pull_request.*:acme/*",), 0, 9, "j"),), ("engineer",)),
        context={"resource": {"repo": "acme/api"}}, now=0)


def rate(fn, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    from agentctl.policy import load_set

    d = doc()
    tmp = Path(tempfile.mkdtemp())
    rows = []
    notes = []
    try:
        import regopy

        (tmp / "p.rego").write_text(REGO)
        s = load_set([str(tmp / "p.rego")])
        assert s.decide(d).allowed

        def fresh_rego():
            r = regopy.Interpreter()
            r.log_level = regopy.LogLevel.NONE
            r.add_module("p.rego", REGO)
            r.set_input(d)
            return str(r.query("data.agent.authz.allow"))

        rows.append(("rego", rate(lambda: s.decide(d), n), rate(fresh_rego, max(1, n // 10))))

        # where a compiled decision's time goes: the same evaluation on the caller's thread (no
        # time-out hand-off), and regopy's conversion of the input document alone
        from agentctl.policy.rego import _evaluate, _regopy

        engine = _regopy()
        inline = engine.Interpreter()
        inline.log_level = engine.LogLevel.NONE
        inline.strict_built_in_errors = True
        notes.append(("rego, same thread (no time-out)", rate(lambda: _evaluate(engine, inline, s.compiled, d), n)))
        notes.append(("rego, input conversion only", rate(lambda: engine.Input(d), n)))

        def compile_once():
            from agentctl import policy

            policy._CACHE.clear()
            load_set([str(tmp / "p.rego")])

        notes.append(("rego, compile a set (with the safety check)", rate(compile_once, max(1, n // 20))))
    except ImportError:
        rows.append(("rego", None, None))
    try:
        import cedarpy

        from agentctl.policy.cedar import to_request

        (tmp / "p.cedar").write_text(CEDAR)
        c = load_set([str(tmp / "p.cedar")])
        assert c.decide(d).allowed

        def fresh_cedar():
            req, ents = to_request(d)
            return cedarpy.is_authorized(req, CEDAR, ents).decision

        rows.append(("cedar", rate(lambda: c.decide(d), n), rate(fresh_cedar, max(1, n // 10))))
    except ImportError:
        rows.append(("cedar", None, None))
    print(f"{'engine':<8}{'compiled set':>16}{'fresh query':>16}   (decisions/s; per decision)")
    for engine, compiled, fresh in rows:
        if compiled is None:
            print(f"{engine:<8}{'not installed':>16}")
            continue
        print(f"{engine:<8}{compiled:>16,.0f}{fresh:>16,.0f}   ({1e3 / compiled:.3f} ms vs {1e3 / fresh:.3f} ms)")
    for what, per_second in notes:
        print(f"{what:<48}{1e3 / per_second:.3f} ms")
    part_verify(int(sys.argv[2]) if len(sys.argv) > 2 else 2000)


VERIFY_REGO = """package agent.authz
default allow = false
allow if {
  input.action == "deploy.staging"
  startswith(input.resource.id, "api/")
  input.delegation.user == "user:alice"
}
"""
VERIFY_CEDAR = """permit(principal, action == Agentctl::Action::"deploy.staging", resource)
when { context has delegation && context.delegation.user == Agentctl::User::"user:alice" };
"""


def part_verify(n: int, repeat: int = 3) -> None:
    """Verification with a compiled policy vs without, per decision: the library and --batch."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from verify import AGENTCTL, Key, action, cpu, env_for, grant, make_home, timed  # bench/verify.py

    from agentctl.policy import load_sets
    from agentctl.verify import NO_AUDIT, StaticTrust, Verifier

    now = int(time.time())
    alice, deployer = Key("user:alice"), Key("agent:deployer")
    g = grant(alice, deployer, "deploy.staging:api/*", now)
    tokens = [action(deployer, g, i, now) for i in range(n)]
    stdin = ("\n".join(tokens) + "\n").encode("ascii")
    root = Path(tempfile.mkdtemp())
    home = make_home(root, "tool", alice, audit=False)
    engines = []
    for engine, suffix, text in (("rego", "rego", VERIFY_REGO), ("cedar", "cedar", VERIFY_CEDAR)):
        try:
            __import__("regopy" if engine == "rego" else "cedarpy")
        except ImportError:
            print(f"verify with a {engine} policy: the engine is not installed")
            continue
        path = root / f"p.{suffix}"
        path.write_text(text)
        engines.append((engine, str(path)))

    def library(sets):
        def run():
            v = Verifier(StaticTrust({"user:alice": alice.public}), recorder=NO_AUDIT, policies=sets)
            for t in tokens:
                assert v.verify_action(t).verdict()["ok"]
        return run

    lib = {"none": library([])}
    batch = {"none": [str(AGENTCTL), "verify", "--batch"]}
    for engine, path in engines:
        lib[engine] = library(load_sets(policies=[path]))
        batch[engine] = [str(AGENTCTL), "verify", "--batch", "--policy", path]
    lib_t: dict[str, list[float]] = {k: [] for k in lib}
    batch_t: dict[str, list[float]] = {k: [] for k in batch}
    for _ in range(repeat):  # interleaved
        for k in lib:
            lib_t[k].append(cpu(lib[k]))
            batch_t[k].append(timed(batch[k], env_for(home), stdin)[1])
    print(f"\nverify {n:,} actions (audit off), CPU per decision, best of {repeat}:")
    print(f"{'':<28}{'no policy':>12}" + "".join(f"{e:>12}{'added':>10}" for e, _ in engines))
    for label, times in (("library Verifier", lib_t), ("agentctl verify --batch", batch_t)):
        base = min(times["none"]) / n * 1e3
        row = f"{label:<28}{base:>9.3f} ms"
        for e, _ in engines:
            per = min(times[e]) / n * 1e3
            row += f"{per:>9.3f} ms{per - base:>+7.3f} ms"
        print(row)


if __name__ == "__main__":
    main()
