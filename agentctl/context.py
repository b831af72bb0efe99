"""The context every library operation runs in: a home, a clock, the environment and callbacks."""

from __future__ import annotations

import os
from typing import Callable, Mapping

from .clock import Clock, system_clock
from .frozen import dataclass, field
from .home import Home

__all__ = ["Context"]


def _silent(_message: str) -> None:
    return None


@dataclass
class Context:
    """What an operation needs from its surroundings; the CLI fills it, tests build their own.

    ``notify`` receives one-line notices for a person (the CLI sends them to stderr); ``prompt`` is
    asked for a passphrase (``"new"`` or ``"unlock"``) and may return None.
    """

    home: Home
    clock: Clock = system_clock
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    notify: Callable[[str], None] = _silent
    prompt: Callable[[str], "bytes | None"] | None = None
    _keystores: dict = field(default_factory=dict, repr=False)

    @classmethod
    def for_home(cls, home: str | os.PathLike | None = None, **kw) -> "Context":
        env = kw.get("env", os.environ)
        return cls(Home.resolve(str(home) if home is not None else None, env), **kw)

    def now(self) -> float:
        return self.clock()

    def keystore(self, mode: str | None = None):
        """The keystore named ``mode`` (default: the configured one), opened once per context."""
        from .keystore import open_keystore

        mode = mode or self.home.config.keystore
        if mode not in self._keystores:
            self._keystores[mode] = open_keystore(mode, self.home, self.env, self.prompt, self.notify)
        return self._keystores[mode]
