"""config.toml: the settings of a home, read strictly (SPEC "Authority and roles", "Policy", "Approvals",
"Beyond one machine"). An unknown table or key, or a value of the wrong kind, is a usage error (exit 2):
nothing fails open. A damaged or unreadable file is operational (exit 3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .errors import StoreError, UsageError
from .frozen import dataclass

if TYPE_CHECKING:
    from .approvals import ApprovalRules

__all__ = ["Config", "Role", "load_config", "check_table", "KEYSTORE_MODES", "AUTHORITY_RULES", "MAX_CONFIG_LEEWAY"]

KEYSTORE_MODES = ("auto", "keyring", "file")
AUTHORITY_RULES = ("quick-start", "roles")
MAX_CONFIG_LEEWAY = 600  # the largest leeway any verifier may allow (SPEC: --leeway <= 10m)
@dataclass(frozen=True)
class Role:
    """A defined role (``[roles.NAME]`` in config.toml): the scopes it confers, whether ``agent:`` and
    ``host:`` principals may hold its authority (``agents = true``), and whether it may revoke."""

    name: str
    scopes: tuple = ()
    agents: bool = False
    revoke: bool = False


@dataclass(frozen=True)
class Config:
    keystore: str = "auto"
    max_ttl: int = 86400
    audit: bool = True
    leeway: int = 60
    checkpoint_every: int = 1000
    authority: str = "quick-start"  # SPEC "Authority and roles": a config without the key means quick-start
    roles: tuple = ()  # (name, Role) pairs, in the order of config.toml
    require_known_agents: bool = False
    ship_max_lag: int = 3600
    policy_files: tuple = ()  # [policy] files: one set, paths relative to the home
    policy_query: str = "data.agent.authz.allow"  # [policy] query
    policy_timeout: float = 1.0  # [policy] timeout, seconds
    sources: tuple = ()  # agentctl.sources.Source, in the order of config.toml ([[sources]])
    audience: str | None = None  # this verifier's audience (required with [approvals])
    approvals: "ApprovalRules | None" = None  # [approvals], or None

    def role(self, name: str) -> Role | None:
        return dict(self.roles).get(name)


_CONFIG_TYPES = {"keystore": str, "max_ttl": str, "audit": bool, "leeway": str, "checkpoint_every": int,
                 "authority": str, "require_known_agents": bool, "roles": dict, "sources": list, "audience": str,
                 "approvals": dict}
_ROLE_TYPES = {"scopes": list, "agents": bool, "revoke": bool}
_POLICY_KEYS = ("files", "query", "timeout")


def load_config(f: Path, env: Mapping[str, str]) -> Config:
    """Read config.toml. An unknown table or key, or a role whose scopes do not parse, is a usage
    error (exit 2): nothing fails open. A damaged or unreadable file is operational (exit 3)."""
    values: dict = {}
    if f.exists():
        import stat

        from . import toml_subset

        try:
            if not stat.S_ISREG(f.stat().st_mode):  # a FIFO would block the read forever
                raise StoreError(f"config file {f} is not a regular file", hint="replace it with a file")
            doc = toml_subset.loads(f.read_text("utf-8"))
        except (toml_subset.TOMLDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"damaged config file {f}: {e}", hint="fix or remove it") from None
        except RecursionError:
            raise UsageError(f"config file {f} is nested too deeply to read", hint="fix or remove it") from None
        except OSError as e:
            raise StoreError(f"cannot read config file {f}: {e.strerror or e}") from None
        audit_table = doc.pop("audit") if isinstance(doc.get("audit"), dict) else {}
        for key, value in audit_table.items():  # [audit] ship_max_lag (a table; `audit = false` is the switch)
            if key != "ship_max_lag" or not isinstance(value, str):
                raise UsageError(f"setting {key!r} in [audit] of {f} is unknown or not a string", hint="known: ship_max_lag (a duration)")
            values["ship_max_lag"] = value
        if "policy" in doc:
            values.update(_policy_table(doc.pop("policy"), f))
        for key, value in doc.items():
            if key not in _CONFIG_TYPES:
                raise UsageError(f"unknown setting {key!r} in {f}", hint=f"known: {', '.join(_CONFIG_TYPES)}")
            want = _CONFIG_TYPES[key]
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                what = "table" if want is dict else want.__name__
                raise UsageError(f"setting {key!r} in {f} must be a {what}")
            values[key] = value
    env_keystore = env.get("AGENTCTL_KEYSTORE")
    if env_keystore:
        values["keystore"] = env_keystore
    keystore = values.get("keystore", "auto")
    if keystore not in KEYSTORE_MODES:
        raise UsageError(f"bad keystore {keystore!r}: use one of {', '.join(KEYSTORE_MODES)}")
    from .durations import parse_duration

    try:
        max_ttl = parse_duration(values.get("max_ttl", "24h"), what="max_ttl")
        leeway = values.get("leeway", "60s")
        leeway_s = 0 if leeway in ("0", "0s") else parse_duration(leeway, what="leeway")
        ship_max_lag = parse_duration(values.get("ship_max_lag", "1h"), what="ship_max_lag")
    except UsageError as e:
        raise StoreError(f"{e.message} in {f}") from None
    if leeway_s > MAX_CONFIG_LEEWAY:
        raise UsageError(f"setting 'leeway' in {f} is more than 10m")
    every = values.get("checkpoint_every", 1000)
    if every < 0:
        raise StoreError(f"setting 'checkpoint_every' in {f} must be 0 (off) or more")
    authority = values.get("authority", "quick-start")
    if authority not in AUTHORITY_RULES:
        raise UsageError(f"bad authority {authority!r} in {f}: use one of {', '.join(AUTHORITY_RULES)}")
    roles = tuple((name, _role(name, table, f)) for name, table in values.get("roles", {}).items())
    sources = ()
    if "sources" in values:
        from .sources import parse_sources

        sources = parse_sources(values["sources"], f)
    audience = values.get("audience")
    if audience is not None:
        from .actions import check_audience

        try:
            check_audience(audience)
        except UsageError as e:
            raise UsageError(f"setting 'audience' in {f}: {e.message}") from None
    approvals = _approvals_table(values["approvals"], audience, f) if "approvals" in values else None
    return Config(keystore=keystore, max_ttl=max_ttl, audit=values.get("audit", True), leeway=leeway_s,
                  checkpoint_every=every, authority=authority, roles=roles,
                  require_known_agents=values.get("require_known_agents", False), ship_max_lag=ship_max_lag,
                  sources=sources, audience=audience, approvals=approvals,
                  **{k: v for k, v in values.items() if k.startswith("policy_")})


def _policy_table(table: object, f: Path) -> dict:
    """``[policy]``: ``files`` (one set, relative to the home), ``query``, ``timeout``. An unknown key
    or a value of the wrong kind is a usage error: no policy is silently skipped."""
    if not isinstance(table, dict):
        raise UsageError(f"setting 'policy' in {f} must be a table ([policy])")
    out: dict = {}
    for key in table:
        if key not in _POLICY_KEYS:
            raise UsageError(f"unknown key {key!r} in [policy] of {f}", hint=f"known: {', '.join(_POLICY_KEYS)}")
    files = table.get("files", [])
    if not isinstance(files, list) or not all(isinstance(x, str) and x.strip() for x in files):
        raise UsageError(f"policy.files in {f} must be a list of file names")
    out["policy_files"] = tuple(files)
    if "query" in table:
        query = table["query"]
        if not isinstance(query, str) or not query.strip():
            raise UsageError(f"policy.query in {f} must be a string such as data.agent.authz.allow")
        out["policy_query"] = query
    if "timeout" in table:
        from .policy import parse_timeout

        out["policy_timeout"] = parse_timeout(table["timeout"], f"policy.timeout in {f}")
    return out


_APPROVAL_TYPES = {"require": list, "approvers": list, "max_ttl": str, "four_eyes": bool, "same_person": str}


def check_table(table: dict, types: dict, where: str, dotted: str | None = None) -> None:
    """Every key of a config table known and of its type: an unknown key or a value of the wrong kind is
    a usage error naming ``where`` and the key (as ``dotted.key`` when given; nothing is silently skipped)."""
    for key, value in table.items():
        want = types.get(key)
        if want is None:
            raise UsageError(f"unknown key {key!r} in {where}", hint=f"known: {', '.join(types)}")
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            named = f"{dotted}.{key}" if dotted else repr(key)
            raise UsageError(f"{named} in {where} must be a {'list' if want is list else want.__name__}")


def _approvals_table(table: dict, audience: str | None, f: Path):
    """``[approvals]`` (SPEC "Approvals"): require, approvers, max_ttl (default 15m), four_eyes (default
    true), same_person. An unknown key, a value of the wrong kind, or the table without a top-level
    ``audience`` is a usage error: nothing fails open."""
    from .approvals import DEFAULT_APPROVAL_MAX_TTL, ApprovalRules
    from .durations import parse_duration

    check_table(table, _APPROVAL_TYPES, f"[approvals] of {f}", "approvals")
    if audience is None:
        raise UsageError(f"[approvals] in {f} needs this verifier's audience: an approval names the audience it is for",
                         hint='add a top-level line such as audience = "deploy-gate"')
    for key in ("require", "approvers"):
        if not all(isinstance(x, str) for x in table.get(key, [])):
            raise UsageError(f"approvals.{key} in {f} must be a list of strings")
    if "same_person" in table and not table["same_person"]:
        raise UsageError(f"approvals.same_person in {f} must name an attribute")
    try:
        max_ttl = parse_duration(table["max_ttl"], what="approvals.max_ttl") if "max_ttl" in table else DEFAULT_APPROVAL_MAX_TTL
        return ApprovalRules(audience, tuple(table.get("require", [])), tuple(table.get("approvers", [])), max_ttl,
                             table.get("four_eyes", True), table.get("same_person"))
    except UsageError as e:
        raise UsageError(f"[approvals] in {f}: {e.message}") from None


def _role(name: str, table: object, f: Path) -> Role:
    from .models import check_role
    from .scopes import parse_scopes

    try:
        check_role(name)
    except UsageError as e:
        raise UsageError(f"{e.message} in {f}") from None
    if not isinstance(table, dict):
        raise UsageError(f"roles.{name} in {f} must be a table ([roles.{name}])")
    check_table(table, _ROLE_TYPES, f"[roles.{name}] in {f}", f"roles.{name}")
    scopes = table.get("scopes", [])
    if not all(isinstance(s, str) for s in scopes):
        raise UsageError(f"roles.{name}.scopes in {f} must be a list of scopes")
    try:
        parsed = parse_scopes(scopes) if scopes else ()
    except UsageError as e:
        raise UsageError(f"roles.{name}.scopes in {f}: {e.message}") from None
    return Role(name, parsed, table.get("agents", False), table.get("revoke", False))
