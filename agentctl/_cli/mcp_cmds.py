"""agentctl mcp guard | sign: stdio proxies that verify and sign MCP tool calls (SPEC, "MCP").

Both write only MCP messages on stdout; their own messages go to stderr (--json and AGENTCTL_FORMAT do
not apply). Exit: 2 or 3 before COMMAND starts, then COMMAND's status (128 + N after signal N), 3 when
an audit append fails (COMMAND is stopped first).
"""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from ..errors import UsageError, VerificationError
from .common import State, command, make_context, read_file
from .options import done, state
from .output import Output

__all__ = ["mcp_app", "do_guard", "do_sign"]

mcp_app = typer.Typer(help="Verify and sign MCP tool calls: stdio proxies for the tool boundary.", no_args_is_help=True)
_PROXY = {"allow_interspersed_args": False}
COMMAND_HELP = "The stdio MCP server to run (after --), with its arguments."


@mcp_app.command("guard", context_settings=_PROXY)
def guard(
    ctx: typer.Context,
    command: Optional[List[str]] = typer.Argument(None, metavar="-- COMMAND [ARG…]", help=COMMAND_HELP),
    name: str = typer.Option(..., "--name", metavar="SERVER", help="The server's name in resources (mcp.call on SERVER/TOOL)."),
    audience: Optional[str] = typer.Option(None, "--audience", metavar="AUD", help="The audience calls and approvals must name (default mcp:SERVER)."),
    pass_: List[str] = typer.Option([], "--pass", metavar="METHOD", help="Also pass this method unverified, e.g. resources/read (repeatable)."),
    seen: str = typer.Option("home", "--seen", metavar="home|memory", help="Where used actions and approvals are remembered (home: across restarts)."),
    revocations: Optional[str] = typer.Option(None, "--revocations", metavar="FILE", help="Also honour this signed revocation list."),
    leeway: Optional[str] = typer.Option(None, "--leeway", metavar="DURATION", help="Clock skew allowed (default 60s, at most 10m)."),
    policy: Optional[List[str]] = typer.Option(None, "--policy", metavar="FILE", help="Also ask this .rego or .cedar policy (a set of its own; repeatable)."),
    query: Optional[str] = typer.Option(None, "--query", metavar="Q", help="The rule each --policy file is asked (default: the config's, data.agent.authz.allow)."),
) -> None:
    """Run a stdio MCP server behind a guard that verifies every tool call."""
    done(do_guard(state(ctx), _proxy_output(), name, audience, pass_, seen, revocations, leeway, command or [],
                  policies=policy or (), query=query))


@mcp_app.command("sign", context_settings=_PROXY)
def sign(
    ctx: typer.Context,
    command: Optional[List[str]] = typer.Argument(None, metavar="-- COMMAND [ARG…]", help="The stdio MCP server (or mcp guard) to run, after --."),
    as_: str = typer.Option(..., "--as", metavar="AGENT", help="The agent signing the calls."),
    grant: Optional[str] = typer.Option(None, "--grant", metavar="FILE", help="The agent's grant presentation."),
    approvals: Optional[str] = typer.Option(None, "--approvals", metavar="DIR", help="Attach the approval in DIR whose binding matches the call exactly."),
    server: str = typer.Option(..., "--server", metavar="SERVER", help="The server's name, as its guard knows it (--name)."),
    audience: Optional[str] = typer.Option(None, "--audience", metavar="AUD", help="The audience to sign for (default mcp:SERVER)."),
) -> None:
    """Run a stdio MCP server, signing every tool call the client makes."""
    done(do_sign(state(ctx), _proxy_output(), as_, grant, server, audience, command or [], approvals=approvals))


def _proxy_output() -> Output:
    return Output(False)  # stdout carries MCP messages only


def _checked_command(command: list[str]) -> list[str]:
    if not command:
        raise UsageError("no command to run", hint="give the MCP server's command after --: agentctl mcp guard --name files -- python server.py")
    return command


@command
def do_guard(state: State, out: Output, name: str, audience: str | None, passes: list[str], seen: str,
             revocations: str | None, leeway: str | None, command: list[str], *, policies=(), query: str | None = None) -> int:
    from ..mcp.mapping import check_server, default_audience
    from ..mcp.proxy import HeldRecorder, run_proxy
    from ..store import Store
    from ..verify import StoreTrust
    from .grant_cmds import parse_leeway
    from .record import Recorder

    check_server(name, "--name")
    aud = default_audience(name, audience, "--audience")
    for method in passes:
        if not method or not method.isprintable() or " " in method:
            raise UsageError(f"bad --pass {method!r}: a JSON-RPC method name such as resources/read")
        if method == "tools/call":
            raise UsageError("--pass tools/call: tool calls are always verified")
    if seen not in ("home", "memory"):
        raise UsageError(f"bad --seen {seen!r}: use home or memory")
    if query is not None and not policies:
        raise UsageError("--query goes with --policy: it names the rule each --policy file is asked",
                         hint="set [policy] query in config.toml for the configured policy")
    _checked_command(command)
    ctx = make_context(state, out)
    leeway_s = parse_leeway(leeway, ctx.home.config.leeway)
    store = Store(ctx.home)
    trust = StoreTrust(store)
    # opened now (a log that cannot be opened fails before COMMAND starts) and held open until the proxy ends
    recorder = HeldRecorder(Recorder(ctx, hold=True))
    try:
        filt = _guard_filter(ctx, recorder, trust, name, aud, passes, seen, revocations, leeway_s, policies, query)
    except BaseException:
        recorder.close()
        raise
    return run_proxy(command, filt, stdin=sys.stdin.buffer, stdout=sys.stdout.buffer, notify=out.note, close=recorder.close)


def _guard_filter(ctx, recorder, trust, name: str, aud: str, passes: list[str], seen: str, revocations: str | None,
                  leeway_s: int, policies, query: str | None):
    """The guard proxy's Guard and its filter, made before COMMAND starts."""
    from ..mcp.guard import Guard
    from ..mcp.wire import GuardFilter
    from ..seen import HomeSeenStore, MemorySeenStore
    from ..verify.policy_step import home_policy_sets

    sets = home_policy_sets(ctx.home, policies, query)  # compiled before COMMAND starts
    extra = []
    if revocations is not None:
        from ..revocation_lists import check_version, verify_list

        try:
            rl = verify_list(read_file(revocations, "revocation list"), trust)
        except VerificationError as e:
            raise UsageError(f"the revocation list {revocations} does not verify: {e.reason}: {e.detail}") from None
        check_version(ctx, rl)
        extra.append(rl.revocations)
    # [approvals] of config.toml, for the guard's own audience (an approval names it)
    g = Guard(trust, server=name, audience=aud, recorder=recorder, clock=ctx.clock, leeway=leeway_s,
              revocations=extra, seen=HomeSeenStore(ctx.home) if seen == "home" else MemorySeenStore(),
              policies=sets, approvals=ctx.home.config.approvals)
    return GuardFilter(g, recorder, tuple(passes))


@command
def do_sign(state: State, out: Output, as_: str, grant_file: str | None, server: str, audience: str | None,
            command: list[str], *, approvals: str | None = None) -> int:
    from pathlib import Path

    from ..mcp.mapping import check_server, default_audience
    from ..mcp.proxy import HeldRecorder, run_proxy
    from ..mcp.signer import CallSigner
    from ..mcp.wire import SignFilter
    from ..names import check_name
    from ..recording import NO_AUDIT
    from ..store import Store
    from ..verify import StoreTrust, Verifier
    from .record import Recorder

    check_name(as_)
    check_server(server, "--server")
    aud = default_audience(server, audience, "--audience")
    if approvals is not None and not Path(approvals).is_dir():
        raise UsageError(f"--approvals {approvals} is not a directory", hint="give the directory the approval files are saved in")
    _checked_command(command)
    ctx = make_context(state, out)
    grant = read_file(grant_file, "grant").strip() if grant_file is not None else None
    trust = StoreTrust(Store(ctx.home))
    if grant is not None:  # what the holder can check now, before COMMAND starts
        try:
            chain, _ = Verifier(trust, recorder=NO_AUDIT, clock=ctx.clock).preflight(grant)
        except VerificationError as e:
            raise UsageError(f"the grant in {grant_file} does not hold: {e.reason}: {e.detail}") from None
        if chain.leaf.delegate != as_:
            raise UsageError(f"the grant in {grant_file} was given to {chain.leaf.delegate}, not {as_}")
    recorder = HeldRecorder(Recorder(ctx, hold=True))  # held open until the proxy ends
    try:  # the agent's key is loaded once, here, not per call
        signer = CallSigner.for_home(ctx, as_, server=server, grant=grant, audience=aud, trust=trust, recorder=recorder,
                                     approvals=approvals)
    except BaseException:
        recorder.close()
        raise
    return run_proxy(command, SignFilter(signer, out.note), stdin=sys.stdin.buffer, stdout=sys.stdout.buffer,
                     notify=out.note, close=recorder.close)
