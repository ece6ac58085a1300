"""The world the fake upstreams serve: change requests, CI and tickets, generated from a seed."""

from __future__ import annotations

import itertools
import random
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

CiOutcome = Literal["success", "failure", "running", "pending"]

HOUR = 3600.0
DAY = 24 * HOUR

# (login on GitHub and GitLab, display name); Jira account ids are "acc-" + login.
PEOPLE = [
    ("alice-w", "Alice Walker"),
    ("bkumar", "Bhavna Kumar"),
    ("chen-li", "Chen Li"),
    ("dmitri-o", "Dmitri Orlov"),
    ("eva-m", "Eva Martins"),
    ("f-okafor", "Femi Okafor"),
]

# (verb of the title, branch prefix)
VERBS = [
    ("Fix", "fix"), ("Add", "feat"), ("Refactor", "refactor"), ("Speed up", "perf"),
    ("Document", "docs"), ("Clean up", "chore"), ("Harden", "fix"), ("Rework", "feat"),
]
SUBJECTS = [
    "login redirect loop", "billing webhook retries", "search index rebuild",
    "rate limiter for the public API", "CSV export of invoices", "dark mode toggle",
    "session timeout handling", "image upload resizing", "audit log pagination",
    "feature flag cleanup", "password reset emails", "onboarding checklist",
    "slow dashboard query", "flaky checkout test", "Stripe SDK upgrade",
    "timezone handling in reports", "cache invalidation on deploy", "notification preferences",
    "API error messages", "mobile navigation menu", "SSO group mapping", "PDF invoice layout",
    "webhook signature check", "background job retries", "health check endpoint",
    "database connection pool", "settings page translations", "form accessibility",
    "staging seed data", "Docker build cache",
]
BUG_TAILS = [
    "breaks on Safari", "times out under load", "shows wrong totals", "fails for new accounts",
    "returns 500 after deploy", "is slow for large teams",
]
STORY_HEADS = [
    "Let admins configure", "Show progress for", "Allow export of", "Notify users about",
    "Add filters to",
]
TASK_HEADS = [
    "Update runbook for", "Write tests for", "Plan migration of", "Review metrics for",
    "Clean up",
]
CHECK_RUN_NAMES = ["build", "test (3.11)", "test (3.12)", "lint", "typecheck", "e2e"]
STATUS_NAMES = ["ci/circleci: build", "codecov/patch", "deploy/preview", "security/snyk"]
WORKFLOWS = ["CI", "Lint", "Deploy preview"]
# The check runs of the CI matrix of one pull request of mine; with three statuses, thirty checks,
# more than a first page of 25 contexts, of which only the 27th (the last shard) fails.
MATRIX_SHARDS = 27
# The CI of my own changes takes turns through this, so that even the smallest dataset shows
# one of mine failing and one running; everyone else's is drawn at random.
MY_CI: list[CiOutcome] = [
    "failure", "success", "running", "success", "pending", "success", "failure", "success",
]
JIRA_KEYS = ["WEB", "API", "OPS", "DATA", "MOB", "SEC", "PAY", "INFRA"]
# (name, category key, weight)
JIRA_STATUSES = [
    ("To Do", "new", 30), ("In Progress", "indeterminate", 25),
    ("In Review", "indeterminate", 15), ("Done", "done", 30),
]
PRIORITIES = [("Highest", 5), ("High", 20), ("Medium", 50), ("Low", 20), ("Lowest", 5)]
ISSUE_TYPES = [("Bug", 30), ("Story", 40), ("Task", 30)]


@dataclass
class Check:
    """A check run, or a commit status (status "completed"; conclusion "pending" = unfinished)."""

    name: str
    kind: Literal["check_run", "status"]
    status: Literal["queued", "in_progress", "completed"]
    conclusion: str | None


ReviewState = Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"]
Mergeable = Literal["MERGEABLE", "CONFLICTING", "UNKNOWN"]
MergeStateStatus = Literal[
    "BEHIND", "BLOCKED", "CLEAN", "DIRTY", "DRAFT", "HAS_HOOKS", "UNKNOWN", "UNSTABLE"
]


@dataclass
class Review:
    """A review of a pull request; a PENDING one is not submitted yet (submitted_at None)."""

    author: str
    state: ReviewState
    submitted_at: float | None


@dataclass
class PullRequest:
    repo: str
    number: int
    title: str
    author: str
    head_ref: str
    base_ref: str
    draft: bool
    review_decision: Literal["APPROVED", "CHANGES_REQUESTED", "REVIEW_REQUIRED"] | None
    review_requested: list[str]
    head_sha: str
    checks: list[Check]
    updated_at: float
    state: Literal["open", "closed", "merged"] = "open"
    created_at: float | None = None  # None: the same as updated_at
    assignees: list[str] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)  # oldest first
    mergeable: Mergeable = "MERGEABLE"
    merge_state_status: MergeStateStatus = "CLEAN"


@dataclass
class WorkflowRun:
    repo: str
    id: int
    name: str
    head_branch: str
    head_sha: str
    actor: str
    status: Literal["queued", "in_progress", "completed"]
    conclusion: str | None
    created_at: float
    updated_at: float
    event: str = "push"


@dataclass
class Pipeline:
    project: str
    id: int
    iid: int
    ref: str
    sha: str
    status: str
    username: str
    created_at: float
    updated_at: float
    source: str = "push"
    started_at: float | None = None  # None: no job has started yet (created, pending, manual)


@dataclass
class MergeRequest:
    project: str
    id: int
    iid: int
    title: str
    author: str
    assignees: list[str]
    reviewers: list[str]
    source_branch: str
    target_branch: str
    draft: bool
    detailed_merge_status: str
    sha: str
    head_pipeline: Pipeline | None
    updated_at: float
    state: str = "opened"
    created_at: float | None = None  # None: the same as updated_at
    has_conflicts: bool = False
    approved_by: list[str] = field(default_factory=list)
    # Each reviewer's state as GitLab's reviewers endpoint tells it; absent: unreviewed.
    reviewer_states: dict[str, str] = field(default_factory=dict)


@dataclass
class Ticket:
    key: str
    summary: str
    status: str
    category: Literal["new", "indeterminate", "done"]
    priority: str | None
    issue_type: str
    assignee_account_id: str | None
    assignee_name: str | None
    updated_at: float
    project_key: str
    # (name, state) of each sprint it was in, oldest first; state active, closed or future.
    sprints: list[tuple[str, str]] = field(default_factory=list)
    due: str | None = None  # YYYY-MM-DD


@dataclass
class Thread:
    """A GitHub notification thread (GET /notifications); `number` 0: not a pull or issue."""

    id: str
    reason: str  # review_requested, mention, assign, ci_activity, ...
    repo: str
    title: str
    type: str = "PullRequest"  # PullRequest, Issue, CheckSuite, ...
    number: int = 0
    updated_at: float = 0.0
    unread: bool = True


@dataclass
class Todo:
    """A GitLab to-do (GET /todos)."""

    id: int
    action: str  # assigned, mentioned, build_failed, review_requested, ...
    project: str
    title: str
    target_type: str = "MergeRequest"
    iid: int = 0
    author: str = ""
    created_at: float = 0.0
    state: str = "pending"


@dataclass
class Dataset:
    """Everything the fakes serve. Mutate it freely: every request reads the current state."""

    github_login: str = "octo-me"
    gitlab_username: str = "lab-me"
    jira_account_id: str = "acc-me"
    jira_email: str = "me@example.com"
    display_name: str = "Sam Rivera"
    github_repos: list[str] = field(default_factory=list)
    gitlab_projects: list[str] = field(default_factory=list)
    pulls: dict[str, list[PullRequest]] = field(default_factory=dict)
    runs: dict[str, list[WorkflowRun]] = field(default_factory=dict)
    merge_requests: dict[str, list[MergeRequest]] = field(default_factory=dict)
    pipelines: dict[str, list[Pipeline]] = field(default_factory=dict)
    # Approvals each GitLab project's rules require; 0 (or absent): no rules, as on GitLab Free.
    gitlab_approvals_required: dict[str, int] = field(default_factory=dict)
    tickets: list[Ticket] = field(default_factory=list)
    jira_projects: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # login / username -> display name
    # GitHub organisations that enforce SAML single sign-on and have not authorised the token:
    # their repositories answer FORBIDDEN (GraphQL) or 403 (REST) with an SSO challenge.
    saml_orgs: set[str] = field(default_factory=set)
    renamed: dict[str, str] = field(default_factory=dict)  # old "owner/name" -> current one
    archived: set[str] = field(default_factory=set)  # GitHub repositories that are archived
    notifications: list[Thread] = field(default_factory=list)  # GitHub's, of the token's user
    todos: list[Todo] = field(default_factory=list)  # GitLab's, of the token's user

    def name_of(self, login: str) -> str:
        if login in (self.github_login, self.gitlab_username):
            return self.display_name
        return self.names.get(login, login)


def stable_id(text: str) -> int:
    """A numeric id derived from a name, the same in every run (for ids the dataset leaves out)."""
    return zlib.crc32(text.encode())


def generate(
    *,
    github_repos: int = 15,
    gitlab_projects: int = 10,
    changes_per_repo: int = 8,
    tickets: int = 300,
    jira_projects: int = 5,
    seed: int = 0,
    now: float | None = None,
) -> Dataset:
    rng = random.Random(seed)
    now = time.time() if now is None else now
    data = Dataset(
        github_repos=[f"acme/web-{i}" for i in range(github_repos)],
        gitlab_projects=[f"acme/platform/api-{i}" for i in range(gitlab_projects)],
        jira_projects=[
            JIRA_KEYS[i] if i < len(JIRA_KEYS) else f"PRJ{i}" for i in range(jira_projects)
        ],
        names=dict(PEOPLE),
    )
    run_ids, my_ci = _ids(rng, 9_100_000_000, 4000), itertools.cycle(MY_CI)
    for index, repo in enumerate(data.github_repos):
        plans = _plans(rng, changes_per_repo, now, data.github_login, my_ci)
        numbers = _ids(rng, rng.randint(20, 300), 9)
        data.pulls[repo] = [_pull(rng, repo, plan, next(numbers), data.github_login)
                            for plan in plans]
        data.runs[repo] = _runs(rng, data, repo, index, now, run_ids)
    mr_ids, pipeline_ids = _ids(rng, 210_000_000, 40), _ids(rng, 1_400_000_000, 300)
    my_ci = itertools.cycle(MY_CI)
    for index, project in enumerate(data.gitlab_projects):
        pipeline_iids = _ids(rng, rng.randint(100, 900), 3)
        plans = _plans(rng, changes_per_repo, now, data.gitlab_username, my_ci)
        merge_requests = []
        for plan, iid in zip(plans, _ids(rng, rng.randint(5, 150), 6), strict=False):
            pipeline = None
            if rng.random() < 0.85:
                pipeline = Pipeline(
                    project, next(pipeline_ids), next(pipeline_iids), plan.branch, _sha(rng),
                    _pipeline_status(rng, plan.ci), plan.author,
                    plan.updated_at - rng.uniform(60, 900), plan.updated_at,
                )
            merge_requests.append(_merge_request(
                rng, project, plan, (next(mr_ids), iid), pipeline, data.gitlab_username
            ))
        data.merge_requests[project] = merge_requests
        data.pipelines[project] = _pipelines(
            rng, data, project, index, now, pipeline_ids, pipeline_iids
        )
    _gitlab_reviews(data)
    data.tickets = _tickets(rng, data, tickets, now)
    _github_extras(random.Random(f"github-extras/{seed}"), data)
    return data


@dataclass
class _Plan:
    """What one change request is about, shared by the GitHub and GitLab generators."""

    role: Literal["mine", "review", "other"]
    author: str
    title: str
    branch: str
    draft: bool
    ci: CiOutcome
    updated_at: float


def _plans(rng: random.Random, count: int, now: float, me: str,
           my_ci: Iterator[CiOutcome]) -> list[_Plan]:
    mine = max(1, round(count / 3)) if count else 0
    review = min(count - mine, max(1, round(count / 4)))
    roles: list[Literal["mine", "review", "other"]] = (
        ["mine"] * mine + ["review"] * review + ["other"] * (count - mine - review)
    )
    rng.shuffle(roles)
    subjects = rng.sample(SUBJECTS, min(count, len(SUBJECTS)))
    subjects += [rng.choice(SUBJECTS) for _ in range(count - len(subjects))]
    branches: set[str] = set()
    plans = []
    for role, subject in zip(roles, subjects, strict=True):
        verb, prefix = rng.choice(VERBS)
        branch = base = f"{prefix}/{_slug(subject)}"
        for n in itertools.count(2):
            if branch not in branches:
                break
            branch = f"{base}-{n}"
        branches.add(branch)
        plan = _Plan(
            role=role,
            author=me if role == "mine" else rng.choice(PEOPLE)[0],
            title=f"{verb} {subject}",
            branch=branch,
            draft=rng.random() < (0.2 if role == "mine" else 0.08),
            ci=next(my_ci) if role == "mine" else rng.choices(
                ["success", "failure", "running", "pending"], [55, 20, 18, 7]
            )[0],
            updated_at=now - rng.uniform(5 * 60, 5 * DAY),
        )
        if plan.ci in ("running", "pending"):
            # CI still under way follows a push minutes ago, not days: only a stuck pipeline
            # (add_stuck_pipeline) is old. Folded into the last 40 minutes, no draw added.
            plan.updated_at = now - 60 - (now - plan.updated_at) % (40 * 60)
        plans.append(plan)
    return plans


def _pull(rng: random.Random, repo: str, plan: _Plan, number: int, me: str) -> PullRequest:
    reviewer = rng.choice(PEOPLE)[0]
    if plan.role == "mine":
        decision = rng.choice(["APPROVED", "REVIEW_REQUIRED", "CHANGES_REQUESTED", "APPROVED"])
        requested = [] if decision == "APPROVED" else [reviewer]
    elif plan.role == "review":
        decision, requested = "REVIEW_REQUIRED", [me, *([reviewer] * rng.randint(0, 1))]
    else:
        decision = rng.choice([None, "APPROVED", "REVIEW_REQUIRED"])
        requested = [reviewer] if decision == "REVIEW_REQUIRED" else []
    return PullRequest(
        repo=repo, number=number, title=plan.title, author=plan.author, head_ref=plan.branch,
        base_ref="main", draft=plan.draft, review_decision=decision,
        review_requested=[login for login in requested if login != plan.author],
        head_sha=_sha(rng), checks=_checks(rng, plan.ci), updated_at=plan.updated_at,
        created_at=plan.updated_at - rng.uniform(HOUR, 10 * DAY),
    )


def _checks(rng: random.Random, ci: CiOutcome) -> list[Check]:
    count = rng.randint(2, 6)
    statuses = rng.randint(1, 2) if count >= 3 else rng.randint(0, 1)
    checks = [
        Check(name, "check_run", "completed", rng.choice(["success"] * 8 + ["skipped", "neutral"]))
        for name in rng.sample(CHECK_RUN_NAMES, count - statuses)
    ] + [Check(name, "status", "completed", "success")
         for name in rng.sample(STATUS_NAMES, statuses)]
    if ci == "pending":
        for check in checks:
            check.status, check.conclusion = (
                ("queued", None) if check.kind == "check_run" else ("completed", "pending")
            )
    elif ci != "success":
        for check in rng.sample(checks, rng.randint(1, min(2, len(checks)))):
            if ci == "failure" and check.kind == "check_run":
                check.conclusion = rng.choice(["failure", "failure", "timed_out", "cancelled"])
            elif ci == "failure":
                check.conclusion = rng.choice(["failure", "error"])
            elif check.kind == "check_run":
                check.status, check.conclusion = "in_progress", None
            else:
                check.conclusion = "pending"
    return checks


def _github_extras(rng: random.Random, data: Dataset) -> None:
    """Reviews, assignees and mergeability of every pull request, then a few that the sandbox
    shows whatever the seed: one of mine with conflicts, one of mine with thirty checks whose only
    failure is the 27th, one assigned to me and one I reviewed that is still open.

    They come from their own random stream (`rng`), after everything else, so that adding them
    changed nothing `generate()` made before.
    """
    me = data.github_login
    pulls = [p for repo in data.github_repos for p in data.pulls[repo]]
    for pull in pulls:
        # A requested reviewer has not reviewed yet: GitHub drops the request when they do.
        others = [login for login, _ in PEOPLE
                  if login != pull.author and login not in pull.review_requested]
        at = rng.uniform(pull.created_at or pull.updated_at, pull.updated_at)
        if pull.review_decision in ("APPROVED", "CHANGES_REQUESTED") and others:
            pull.reviews.append(Review(rng.choice(others), pull.review_decision, at))
        elif others and rng.random() < 0.3:
            pull.reviews.append(Review(rng.choice(others), "COMMENTED", at))
        if pull.author == me:
            pull.assignees = [me] if rng.random() < 0.5 else []
        elif rng.random() < 0.3:
            pull.assignees = [pull.author]
        pull.mergeable = rng.choices(["MERGEABLE", "CONFLICTING", "UNKNOWN"], [85, 10, 5])[0]

    mine = [p for p in pulls if p.author == me and p.state == "open"]
    matrix = next((p for p in mine if _outcome(p.checks) == "failure"), None)
    if matrix is not None:
        matrix.checks = [
            Check(f"test (shard {n}/{MATRIX_SHARDS})", "check_run", "completed",
                  "failure" if n == MATRIX_SHARDS else "success")
            for n in range(1, MATRIX_SHARDS + 1)
        ] + [Check(name, "status", "completed", "success") for name in STATUS_NAMES[:3]]
    conflicted = next((p for p in mine if p is not matrix), None)
    if conflicted is not None:
        conflicted.mergeable = "CONFLICTING"
    theirs = [p for p in pulls
              if p.author != me and me not in p.review_requested and p.state == "open"]
    if theirs:
        theirs[0].assignees = [me]
    if len(theirs) > 1:
        theirs[1].reviews.append(Review(me, "COMMENTED", theirs[1].updated_at - 60))
    for pull in pulls:
        pull.merge_state_status = _merge_state(pull)


def _merge_state(pull: PullRequest) -> MergeStateStatus:
    """What GitHub says of a pull request's merge: conflicts first, then draft, review, CI."""
    if pull.mergeable != "MERGEABLE":
        return "DIRTY" if pull.mergeable == "CONFLICTING" else "UNKNOWN"
    if pull.draft:
        return "DRAFT"
    if pull.review_decision in ("REVIEW_REQUIRED", "CHANGES_REQUESTED"):
        return "BLOCKED"
    return "CLEAN" if _outcome(pull.checks) == "success" else "UNSTABLE"


def _runs(rng: random.Random, data: Dataset, repo: str, index: int, now: float,
          ids: Iterator[int]) -> list[WorkflowRun]:
    me = data.github_login
    runs = []

    def run(branch: str, sha: str, actor: str, outcome: str, at: float, name: str = "CI") -> None:
        duration = rng.uniform(90, 900)
        status, conclusion = {
            "running": ("in_progress", None), "pending": ("queued", None)
        }.get(outcome, ("completed", outcome))
        runs.append(WorkflowRun(
            repo=repo, id=next(ids), name=name, head_branch=branch, head_sha=sha, actor=actor,
            status=status, conclusion=conclusion, created_at=at,
            updated_at=min(now, at + duration) if status == "completed" else at + 5,
        ))

    for pull in data.pulls[repo]:
        latest = pull.updated_at - rng.uniform(30, 600)
        ci = _outcome(pull.checks)
        if pull.author != me:
            run(pull.head_ref, pull.head_sha, pull.author, ci, latest)
            continue
        for back in range(rng.randint(1, 3) - 1, 0, -1):
            run(pull.head_ref, _sha(rng), me, rng.choice(["failure", "success", "cancelled"]),
                latest - back * rng.uniform(HOUR, DAY), rng.choice(WORKFLOWS))
        run(pull.head_ref, pull.head_sha, me, ci, latest)
    for _ in range(2):
        run("main", _sha(rng), rng.choice(PEOPLE)[0], rng.choice(["success"] * 4 + ["failure"]),
            now - rng.uniform(HOUR, 3 * DAY))
    if index < 2:
        # A branch pushed but not yet proposed: its failure is only visible in the runs.
        branch, sha = f"spike/{_slug(rng.choice(SUBJECTS))}", _sha(rng)
        for back in range(rng.randint(1, 2), 0, -1):
            run(branch, sha, me, "failure", now - back * rng.uniform(10 * 60, 6 * HOUR))
    return runs


def _outcome(checks: list[Check]) -> CiOutcome:
    if any(c.conclusion in ("failure", "error", "timed_out", "cancelled") for c in checks):
        return "failure"
    if any(c.status == "in_progress" for c in checks):
        return "running"
    if any(c.status == "queued" or c.conclusion == "pending" for c in checks):
        return "pending"
    return "success"


def _merge_request(rng: random.Random, project: str, plan: _Plan, ids: tuple[int, int],
                   pipeline: Pipeline | None, me: str) -> MergeRequest:
    reviewer = rng.choice(PEOPLE)[0]
    if plan.role == "review":
        reviewers = [me]
    elif plan.role == "mine" or rng.random() < 0.5:
        reviewers = [reviewer] if reviewer != plan.author else []
    else:
        reviewers = []
    if plan.draft:
        status = "draft_status"
    elif pipeline is not None and pipeline.status == "failed":
        status = "ci_must_pass"
    elif pipeline is not None and pipeline.status not in ("success", "failed"):
        status = "ci_still_running"
    elif plan.role == "mine":
        status = rng.choice(
            ["mergeable", "not_approved", "requested_changes", "discussions_not_resolved"]
        )
    else:
        status = rng.choice(["mergeable", "not_approved", "not_approved"])
    return MergeRequest(
        project=project, id=ids[0], iid=ids[1],
        title=("Draft: " if plan.draft else "") + plan.title,
        author=plan.author, assignees=[plan.author], reviewers=reviewers,
        source_branch=plan.branch, target_branch="main", draft=plan.draft,
        detailed_merge_status=status, sha=pipeline.sha if pipeline else _sha(rng),
        head_pipeline=pipeline, updated_at=plan.updated_at,
        created_at=plan.updated_at - rng.uniform(HOUR, 10 * DAY),
    )


def _pipeline_status(rng: random.Random, ci: CiOutcome) -> str:
    if ci == "pending":
        return rng.choice(["pending", "created", "waiting_for_resource"])
    return {"success": "success", "failure": "failed", "running": "running"}[ci]


def _pipelines(rng: random.Random, data: Dataset, project: str, index: int, now: float,
               ids: Iterator[int], iids: Iterator[int]) -> list[Pipeline]:
    me = data.gitlab_username
    pipelines = []

    def pipeline(ref: str, username: str, status: str, at: float) -> None:
        finished = status in ("success", "failed", "canceled", "skipped")
        pipelines.append(Pipeline(
            project, next(ids), next(iids), ref, _sha(rng), status, username, at,
            min(now, at + rng.uniform(120, 1200)) if finished else at + 5,
        ))

    for mr in data.merge_requests[project]:
        if mr.author == me:
            for back in range(rng.randint(1, 2), 0, -1):
                pipeline(mr.source_branch, me, rng.choice(["failed", "success", "canceled"]),
                         mr.updated_at - back * rng.uniform(HOUR, DAY))
    for _ in range(rng.randint(2, 3)):
        pipeline("main", rng.choice(PEOPLE)[0], rng.choice(["success"] * 4 + ["failed"]),
                 now - rng.uniform(HOUR, 3 * DAY))
    if index == 0:
        pipeline(f"spike/{_slug(rng.choice(SUBJECTS))}", me, "failed", now - rng.uniform(600, DAY))
    pipelines += [mr.head_pipeline for mr in data.merge_requests[project] if mr.head_pipeline]
    # Ids and iids grow with time, as GitLab's do.
    pipelines.sort(key=lambda p: p.created_at)
    numbers = sorted((p.id, p.iid) for p in pipelines)
    for p, (number, iid) in zip(pipelines, numbers, strict=True):
        p.id, p.iid = number, iid
    return pipelines


# Pipeline statuses before any job has started (GitLab's `started_at` is null until one does).
NOT_STARTED = ("created", "waiting_for_resource", "preparing", "pending", "scheduled", "manual")
# When the pipeline "pending since 2016" that a team saw was created.
STUCK_SINCE = 1_460_365_200.0  # 2016-04-11 09:00 UTC


def _gitlab_reviews(data: Dataset) -> None:
    """Approval rules, approvals, reviewers' states, conflicts and start times consistent with
    each merge request's detailed_merge_status, derived from names rather than drawn, so that
    every other generated value stays as it was."""
    me = data.gitlab_username
    for project in data.gitlab_projects:
        # A third of the projects have no approval rules: there "mergeable" means nobody had to
        # approve, and usually nobody did.
        required = 0 if stable_id(project) % 3 == 0 else 1
        data.gitlab_approvals_required[project] = required
        for mr in data.merge_requests[project]:
            _review_of(mr, required, me)
        for pipeline in data.pipelines[project]:
            if pipeline.status not in NOT_STARTED:
                pipeline.started_at = pipeline.created_at + stable_id(
                    f"{project}#{pipeline.id}") % 40


def _review_of(mr: MergeRequest, required: int, me: str) -> None:
    key = stable_id(f"{mr.project}!{mr.iid}")
    pool = [r for r in mr.reviewers if r != mr.author] + sorted(
        (login for login, _ in PEOPLE if login not in (mr.author, *mr.reviewers)),
        key=lambda login: stable_id(f"{login}{key}"))
    status = mr.detailed_merge_status
    if status == "requested_changes" and not mr.reviewers:
        status = "not_approved" if required else "mergeable"
    if status == "not_approved" and not required:
        status = "mergeable"
    if status in ("mergeable", "not_approved") and key % 7 == 0:
        status = "conflict"  # GitLab reports conflicts before missing approvals
    mr.detailed_merge_status = status
    mr.has_conflicts = status == "conflict"
    if status == "requested_changes":
        mr.reviewer_states[mr.reviewers[0]] = "requested_changes"
        approvals = 0
    elif status == "not_approved":
        approvals = 0
    elif status == "mergeable":
        approvals = required or key % 2  # without rules, some approve anyway
    else:
        approvals = (required or 1) if key % 2 else 0
    mr.approved_by = pool[:approvals]
    for login in mr.approved_by:
        if login in mr.reviewers:
            mr.reviewer_states[login] = "approved"
    if me in mr.reviewers and me not in mr.reviewer_states and key % 3 == 0:
        mr.reviewer_states[me] = "reviewed"


def add_gitlab_project(data: Dataset, path: str, count: int, *, mine: int = 3,
                       reviewing: int = 2, now: float | None = None) -> None:
    """A GitLab project of `count` open merge requests, `mine` of them written by me and
    `reviewing` with me as reviewer, spread evenly, with approval rules; derived from their
    numbers rather than drawn, so that the rest of the dataset stays as it was."""
    now = time.time() if now is None else now
    me = data.gitlab_username
    chosen_mine = {round(i * count / mine) for i in range(mine)} if mine else set()
    chosen_review = {round((i + 0.5) * count / reviewing) for i in range(reviewing)} \
        if reviewing else set()
    base = 300_000_000 + stable_id(path) % 1_000_000 * 10_000
    merge_requests, pipelines = [], []
    for i in range(count):
        verb, prefix = VERBS[i % len(VERBS)]
        subject = SUBJECTS[i % len(SUBJECTS)]
        author = me if i in chosen_mine else PEOPLE[i % len(PEOPLE)][0]
        updated = now - 60.0 * (i + 1)
        pipeline = None
        if author == me:
            pipeline = Pipeline(path, base + i, i + 1, f"{prefix}/{_slug(subject)}-{i}",
                                f"{stable_id(f'{path}@{i}'):040x}", "success", me,
                                updated - 600, updated - 300, started_at=updated - 590)
            pipelines.append(pipeline)
        merge_requests.append(MergeRequest(
            project=path, id=base + i, iid=i + 1, title=f"{verb} {subject} ({i})",
            author=author, assignees=[author],
            reviewers=[me] if i in chosen_review else [PEOPLE[(i + 1) % len(PEOPLE)][0]],
            source_branch=f"{prefix}/{_slug(subject)}-{i}", target_branch="main", draft=False,
            detailed_merge_status="not_approved", sha=f"{stable_id(f'{path}@{i}'):040x}",
            head_pipeline=pipeline, updated_at=updated, created_at=updated - DAY,
        ))
    data.gitlab_projects.append(path)
    data.merge_requests[path] = merge_requests
    data.pipelines[path] = pipelines
    data.gitlab_approvals_required[path] = 1


def add_stuck_pipeline(data: Dataset, project: str, *, ref: str = "release/2016.04",
                       created_at: float = STUCK_SINCE) -> Pipeline:
    """A pipeline of mine still `pending` since 2016, as a team found one: never started, so
    GitLab's `started_at` is null and only `created_at` tells its age."""
    key = stable_id(f"{project}#{ref}")
    pipeline = Pipeline(project, 1 + key % 1_000_000, 1 + key % 90, ref, f"{key:040x}",
                        "pending", data.gitlab_username, created_at, created_at + 5)
    data.pipelines[project].insert(0, pipeline)  # ids grow with time: the oldest first
    return pipeline


def _tickets(rng: random.Random, data: Dataset, count: int, now: float) -> list[Ticket]:
    if not data.jira_projects:
        return []
    numbers = {key: _ids(rng, rng.randint(40, 400), 1) for key in data.jira_projects}
    tickets = []
    for i in range(count):
        project = data.jira_projects[i % len(data.jira_projects)]
        kind = rng.choices(*zip(*ISSUE_TYPES, strict=True))[0]
        subject = rng.choice(SUBJECTS)
        if kind == "Bug":
            summary = f"{subject[0].upper()}{subject[1:]} {rng.choice(BUG_TAILS)}"
        else:
            summary = f"{rng.choice(STORY_HEADS if kind == 'Story' else TASK_HEADS)} {subject}"
        status, category, _ = rng.choices(JIRA_STATUSES, [w for *_, w in JIRA_STATUSES])[0]
        roll = rng.random()
        if roll < 0.4:
            account, name = data.jira_account_id, data.display_name
        elif roll < 0.85:
            login, name = rng.choice(PEOPLE)
            account = f"acc-{login}"
        else:
            account = name = None
        key = f"{project}-{next(numbers[project])}"
        tickets.append(Ticket(
            key=key, summary=summary, status=status,
            category=category, priority=rng.choices(*zip(*PRIORITIES, strict=True))[0],
            issue_type=kind, assignee_account_id=account, assignee_name=name,
            updated_at=now - min(30 * DAY, rng.expovariate(1 / (4 * DAY)) + 60),
            project_key=project, **_planning(key, category, now),
        ))
    return tickets


def _planning(key: str, category: str, now: float) -> dict[str, Any]:
    """Sprints and a due date for some tickets, derived from the key so that the random
    stream (and so every other generated value) stays as it was."""
    number = stable_id(key)
    sprint = 40 + number % 3
    sprints = [(f"Sprint {sprint - 1}", "closed")] if number % 5 == 0 else []
    if category != "done" and number % 3:
        sprints.append((f"Sprint {sprint}", "active"))
    due = None
    if number % 4 == 0:
        due = time.strftime("%Y-%m-%d", time.gmtime(now + (number % 21 - 5) * DAY))
    return {"sprints": sprints, "due": due}


def _ids(rng: random.Random, start: int, max_step: int) -> Iterator[int]:
    """Increasing numbers with random gaps, as ids look when other people create things too."""
    value = start
    while True:
        yield value
        value += rng.randint(1, max_step)


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
