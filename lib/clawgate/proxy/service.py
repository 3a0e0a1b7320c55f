"""Where the proxy runs: is it listening, and how the owner starts it on this machine.

One home for the hint `route add` and `doctor` both give: the unit install.sh wrote (systemd's or
launchd's), or, where no systemd runs (a container, WSL without it) or no unit was installed
(--no-proxy), the owner's own `clawgate proxy` in the foreground.
"""

import os

from ..config import Config
from . import peer


def listening(cfg: Config) -> bool:
    """Something listens on the proxy's port (True where the kernel's tables cannot be read)."""
    return not peer.available() or bool(peer.listeners(cfg.proxy_port))


def start_hint(cfg: Config, door: str = "clawgate") -> str:
    """How to start the proxy here; `door` is how the front door is typed (Layout.door)."""
    by_hand = f"as {cfg.owner.name}: {door} proxy (it stays in the foreground)"
    unit = cfg.proxy_service
    if unit == "none":
        return f"no proxy service is installed (install.sh --no-proxy): rerun install.sh without it, or {by_hand}"
    if unit.endswith(".plist"):
        return f"sudo launchctl bootstrap system {unit} (or, {by_hand})"
    if not os.path.isdir("/run/systemd/system"):
        return f"no systemd runs here to start {os.path.basename(unit)}: {by_hand}"
    return f"sudo systemctl start {os.path.basename(unit)} (or, {by_hand})"
