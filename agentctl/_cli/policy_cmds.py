"""agentctl policy input | eval | check | schema: the input document verify would build, and asking,
compiling and describing policy sets without a token."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import UsageError
from .common import State, guarded, read_file
from .output import Output

__all__ = ["policy_app", "do_input", "do_eval", "do_check", "do_schema"]

policy_app = typer.Typer(help="Rego and Cedar policies: the input document, evaluate, compile-check, print the Cedar schema.",
                         no_args_is_help=True)

JSON_HELP = "Print exactly one JSON document on stdout; everything else goes to stderr."
QUERY_HELP = "The Rego rule to ask (default data.agent.authz.allow)."


def _state(ctx: typer.Context) -> State:
    return ctx.obj if isinstance(ctx.obj, State) else State()


@policy_app.command("input")
def input_(
    ctx: typer.Context,
    token: str = typer.Argument(..., metavar="TOKEN|FILE|-", help="The grant or action token, a file, or - for stdin."),
    action: Optional[str] = typer.Option(None, "--action", metavar="A", help="The action asked (a grant alone: its action)."),
    resource: Optional[str] = typer.Option(None, "--resource", metavar="R", help="The resource asked (a grant alone: its resource id)."),
    context: Optional[str] = typer.Option(None, "--context", metavar="FILE", help="A JSON object the policies see beside the verified facts."),
    audience: Optional[str] = typer.Option(None, "--audience", metavar="AUD", help="The audience verifying, as verify --audience."),
    at: Optional[str] = typer.Option(None, "--at", metavar="TIME", help="Build it as of this time (RFC 3339, or a duration ago)."),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print the policy input document verify would build (after the cryptographic steps hold)."""
    s = _state(ctx)
    raise typer.Exit(do_input(s, s.output(json_), token, action, resource, context, audience, at))


@policy_app.command("eval")
def eval_(
    ctx: typer.Context,
    files: List[str] = typer.Argument(..., metavar="FILE…", help="The .rego or .cedar files of one set."),
    input_: str = typer.Option(..., "--input", metavar="FILE|-", help="The input document (JSON), or - for stdin."),
    query: Optional[str] = typer.Option(None, "--query", metavar="Q", help=QUERY_HELP),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Ask one policy set about an input document. Exit 0 allow, 1 deny."""
    s = _state(ctx)
    raise typer.Exit(do_eval(s.output(json_), files, input_, query))


@policy_app.command("check")
def check(
    ctx: typer.Context,
    files: List[str] = typer.Argument(..., metavar="FILE…", help="The .rego or .cedar files of one set."),
    query: Optional[str] = typer.Option(None, "--query", metavar="Q", help=QUERY_HELP),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Compile a policy set (Cedar: also validate against agentctl's schema)."""
    s = _state(ctx)
    raise typer.Exit(do_check(s.output(json_), files, query))


@policy_app.command("schema")
def schema(
    ctx: typer.Context,
    cedar: bool = typer.Option(False, "--cedar", help="The Cedar schema of agentctl's entity types."),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print the schema policies are written against."""
    s = _state(ctx)
    raise typer.Exit(do_schema(s.output(json_), cedar))


def do_input(state: State, out: Output, source: str, action: str | None, resource: str | None, context: str | None,
             audience: str | None = None, at: str | None = None) -> int:
    """The input document as canonical JSON (RFC 8785), so that its SHA-256 is the ``input_sha256`` a
    verify event records. A token that does not verify is a denial (exit 1); nothing is recorded."""
    def body() -> int:
        from ..durations import parse_when
        from ..encoding import canonical_json
        from ..errors import VerificationError
        from ..policy import input_sha256
        from ..store import Store
        from ..verify import NO_AUDIT, StoreTrust, Verifier
        from .action_cmds import _token_argument, read_context
        from .common import make_context

        if source == "-" and context == "-":
            raise UsageError("the token and --context cannot both read stdin")
        ctx_doc = read_context(context) if context is not None else None
        c = make_context(state, out)
        when = parse_when(at, c.now()) if at is not None else None
        verifier = Verifier(StoreTrust(Store(c.home)), recorder=NO_AUDIT, clock=c.clock, leeway=c.home.config.leeway)
        token = _token_argument(source)
        try:
            doc = verifier.policy_input(token, action=action, resource=resource, audience=audience, at=when, context=ctx_doc)
        except VerificationError as e:
            out.stderr.write(f"agentctl: denied: {e.reason}: {e.detail}\n")
            out.result({"ok": False, "error": "denied", "reason": e.reason, "message": e.detail, "exit_code": 1})
            return 1
        digest = input_sha256(doc)
        out.result({"ok": True, "input": doc, "input_sha256": digest},
                   lambda: out.line(canonical_json(doc).decode("utf-8")))
        return 0

    return guarded(out, body)


def do_eval(out: Output, files: list[str], source: str, query: str | None) -> int:
    def body() -> int:
        from ..encoding import EncodingError, loads_strict
        from ..policy import DEFAULT_QUERY, input_sha256, load_set

        text = read_file(source, "input document")
        try:
            doc = loads_strict(text)
        except EncodingError as e:
            raise UsageError(f"the input document is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise UsageError("the input document must be a JSON object")
        policy_set = load_set(files, query or DEFAULT_QUERY)
        decision = policy_set.decide(doc)
        result = {"ok": decision.allowed, **decision.describe(), "files": list(policy_set.files),
                  "input_sha256": input_sha256(doc)}
        verdict = "allow" if decision.allowed else "deny"
        if not decision.allowed:  # a verdict: the one failure shape, the decision's fields kept
            result.update(error="denied", reason=None, message=f"deny: {decision.detail}", exit_code=1)
        out.result(result, f"{verdict}: {decision.detail}")
        return 0 if decision.allowed else 1

    return guarded(out, body)


def do_check(out: Output, files: list[str], query: str | None) -> int:
    def body() -> int:
        from ..policy import DEFAULT_QUERY, engine_of, load_set, read_policy_file

        policy_set = load_set(files, query or DEFAULT_QUERY)
        findings: list[str] = []
        if engine_of(files) == "cedar":
            from ..policy.cedar import check_files

            findings = check_files([read_policy_file(f) for f in files])
        for line in findings:
            out.note(f"schema: {line}")
        doc = {"ok": True, "engine": policy_set.engine, "files": list(policy_set.files), "digest": policy_set.digest,
               "query": policy_set.query if policy_set.engine == "rego" else None, "schema_findings": findings}
        what = f"{policy_set.engine} set {policy_set.name} compiles"
        if policy_set.engine == "rego":
            what += f" and defines {policy_set.query}"
        elif findings:
            what += f" ({len(findings)} schema finding{'s' if len(findings) != 1 else ''} above)"
        else:
            what += " and validates against the schema"
        out.result(doc, f"ok: {what}")
        return 0

    return guarded(out, body)


def do_schema(out: Output, cedar: bool) -> int:
    def body() -> int:
        if not cedar:
            raise UsageError("say which schema: --cedar", hint="Rego policies read the input document in docs/policy.md")
        from ..policy.cedar import SCHEMA

        out.result({"ok": True, "engine": "cedar", "schema": SCHEMA}, lambda: out.stdout.write(SCHEMA))
        return 0

    return guarded(out, body)
