from __future__ import annotations

from switchboard.kit.errors import AppError


class UnknownAgentError(AppError):
    status = 422
    code = "agent.unknown"
    title = "Unprocessable content"

    def __init__(self, name: str) -> None:
        super().__init__(f"There is no agent named {name!r}.")
        self.name = name


class AgentConfigError(ValueError):
    """The agent definitions or tool bundles do not fit together; found when building."""
