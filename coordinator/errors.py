"""The project's errors. Each carries the ids it is about; `retryable` says whether trying
again later can help (a provider's 429 or a timeout) or not (an invalid number)."""

from __future__ import annotations


class CoordinatorError(Exception):
    retryable = False


class ConfigError(CoordinatorError):
    """The config files have problems; `problems` lists each as `path:line: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the config:\n" + "\n".join(problems))


class StoreError(CoordinatorError):
    retryable = True


class Conflict(StoreError):
    """A save based on a stale copy: read again, apply again."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} changed meanwhile")


class IncidentNotFound(CoordinatorError):
    def __init__(self, incident_id: str) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident with id {incident_id!r}")


class PlaybookNotFound(CoordinatorError):
    def __init__(self, playbook_id: str) -> None:
        self.playbook_id = playbook_id
        super().__init__(f"no playbook with id {playbook_id!r}")


class TemplateOutside(CoordinatorError):
    """A template name that would be read from outside templates/ (`..`, an absolute
    path, a symlink leading out): never read, whatever the file holds."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"template {name!r} is outside templates/")


class InvalidAction(CoordinatorError, ValueError):
    """The action does not fit the incident's state (resolving a closed incident...), or
    the playbook cannot open one (a template refused or gone since the config check)."""
