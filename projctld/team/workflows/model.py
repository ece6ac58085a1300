"""What a workflow is once loaded: its parameters, its steps, their stages, and the git facts."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# Names of steps and parameters: conditions and templates reach them as steps.NAME, params.NAME.
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
WORKFLOW_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_RETRIES = 10
MAX_RETRY_DELAY = 60.0  # the cap on one backoff delay, whatever the base and the attempt

Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
Value = str | int | bool | None
ParamType = Literal["string", "int", "bool"]


class _Definition(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class Param(_Definition, kw_only=True):
    """A declared parameter; `type` is inferred from `default` when not given."""

    description: str = ""
    type: ParamType | None = None
    default: str | int | bool | None = None
    required: bool = False


class Step(_Definition, kw_only=True):
    """One step. After loading, `command` is the argument list (shell = false) or the one shell
    script string (shell = true); either may hold {{ placeholders }}."""

    name: Name
    command: Annotated[list[str], msgspec.Meta(min_length=1)] | Annotated[
        str, msgspec.Meta(min_length=1)]
    shell: bool = False
    condition: str = ""
    timeout: Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)] | None = None
    retries: Annotated[int, msgspec.Meta(ge=0, le=MAX_RETRIES)] = 0
    retry_delay: Annotated[float, msgspec.Meta(ge=0, le=MAX_RETRY_DELAY)] = 1.0
    group: str = ""
    continue_on_error: bool = False

    def backoff(self, attempt: int) -> float:
        """The delay before the attempt after failed attempt number `attempt` (1-based)."""
        return min(MAX_RETRY_DELAY, self.retry_delay * 2 ** (attempt - 1))


class Workflow(_Definition, kw_only=True):
    """A loaded, validated workflow; `source` is the file it came from (or the config file)."""

    name: Annotated[str, msgspec.Meta(pattern=WORKFLOW_NAME_PATTERN)]
    description: str = ""
    source: str = ""
    params: dict[Name, Param] = {}
    steps: Annotated[list[Step], msgspec.Meta(min_length=1)]

    def stages(self) -> list[list[Step]]:
        """The steps grouped into stages, in order: consecutive steps sharing a non-empty `group`
        form one stage (run concurrently); every other step is a stage of its own."""
        stages: list[list[Step]] = []
        for step in self.steps:
            if stages and step.group and stages[-1][0].group == step.group:
                stages[-1].append(step)
            else:
                stages.append([step])
        return stages


class GitFacts(msgspec.Struct, frozen=True, kw_only=True):
    """The checkout a workflow runs in, as `git.*` in conditions and templates (None: unknown)."""

    root: str | None = None
    branch: str | None = None
    commit_sha: str | None = None

    def get(self, field: str) -> str | None:
        if field == "short_sha":
            return self.commit_sha[:12] if self.commit_sha else None
        return getattr(self, field)


# The git.* names, and why each may have no value (for messages).
GIT_FIELDS = {
    "root": "the workflow is not running in a git checkout",
    "branch": "HEAD is not on a branch (detached) or this is not a git checkout",
    "commit_sha": "the checkout has no commit yet or this is not a git checkout",
    "short_sha": "the checkout has no commit yet or this is not a git checkout",
}
