"""clawgate: TOTP-gated secrets and root for a host that runs an AI agent."""

__version__ = "0.1.0"
