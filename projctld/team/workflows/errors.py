"""The workflow engine's error: a definition that does not load, or a run that cannot start."""

from __future__ import annotations

from projctld.errors import ProjctlError


class WorkflowError(ProjctlError):
    """A workflow file or table is invalid (context: file, line, workflow, step), a parameter is
    missing or malformed, or no workflow has the name asked for.

    Failures of the steps themselves are not errors: they are reported as events and in the
    run's result.
    """

    code = "workflow"
    exit_code = 2
