"""C2SP signed notes and checkpoints: kept as a name for :mod:`agentctl.audit.note`."""

from .audit.note import *  # noqa: F403
from .audit.note import __all__  # noqa: F401
