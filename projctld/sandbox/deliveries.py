"""Webhook deliveries as GitHub, GitLab and Jira send them, built from the fakes' dataset.

Headers and payloads follow each service's webhook documentation (the fields the hub reads,
and enough of the rest to be recognisable):

- GitHub ("Webhook events and payloads", "Validating webhook deliveries"): POST with
  `Content-Type: application/json`, `User-Agent: GitHub-Hookshot/...`, `X-GitHub-Event`,
  `X-GitHub-Delivery` (a GUID), `X-GitHub-Hook-ID`, `X-GitHub-Hook-Installation-Target-Type`
  and `-ID`, `X-Hub-Signature` (HMAC-SHA1, legacy) and `X-Hub-Signature-256`
  (`sha256=` + HMAC-SHA256 hex of the raw body); a body with `action`, the object, and
  `repository` and `sender`.
- GitLab ("Webhook events", "Webhooks"): `X-Gitlab-Event` (Merge Request Hook, Pipeline Hook),
  `X-Gitlab-Token` (the secret itself), `X-Gitlab-Event-UUID`, `X-Gitlab-Webhook-UUID`,
  `Idempotency-Key` (the same on a retry), `X-Gitlab-Instance`; a body with `object_kind`,
  `user`, `project` (with `path_with_namespace`) and `object_attributes`.
- Jira Cloud ("Webhooks": secure admin webhooks): `X-Atlassian-Webhook-Identifier` (the same
  on a retry), `X-Atlassian-Webhook-Flow`, `X-Hub-Signature` (`sha256=` + HMAC-SHA256 hex);
  a body with `timestamp`, `webhookEvent` (jira:issue_updated), `issue` and `changelog`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from projctld.sandbox.dataset import (
    MergeRequest,
    Pipeline,
    PullRequest,
    Ticket,
    WorkflowRun,
    stable_id,
)


@dataclass(frozen=True)
class Delivery:
    path: str  # under the hub's URL
    headers: dict[str, str]
    body: bytes


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _repository(full_name: str, web: str) -> dict:
    owner, name = full_name.split("/", 1)
    return {"id": stable_id(full_name), "node_id": f"R_{stable_id(full_name)}", "name": name,
            "full_name": full_name, "private": True,
            "owner": {"login": owner, "id": stable_id(owner), "type": "Organization"},
            "html_url": f"{web}/{full_name}", "default_branch": "main"}


def _user(login: str) -> dict:
    return {"login": login, "id": stable_id(login), "type": "User"}


def github(event: str, payload: dict, secret: bytes, *, delivery: str | None = None,
           signature: str | None = None) -> Delivery:
    """A GitHub delivery of `event`; `signature` overrides the computed one (tests)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    repo = payload.get("repository", {})
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/0b5d1a3",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid1()),
        "X-GitHub-Hook-ID": "452812344",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Hook-Installation-Target-ID": str(repo.get("id", 0)),
        "X-Hub-Signature": "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": signature if signature is not None else
        "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
    }
    return Delivery("/v1/webhooks/github", headers, body)


def github_pull_request(pull: PullRequest, action: str = "synchronize", *,
                        web: str = "https://github.com") -> dict:
    """The `pull_request` event's payload."""
    url = f"{web}/{pull.repo}/pull/{pull.number}"
    return {
        "action": action, "number": pull.number,
        "pull_request": {
            "url": f"https://api.github.com/repos/{pull.repo}/pulls/{pull.number}",
            "id": stable_id(url), "html_url": url, "number": pull.number, "state": pull.state,
            "title": pull.title, "user": _user(pull.author), "draft": pull.draft,
            "head": {"ref": pull.head_ref, "sha": pull.head_sha},
            "base": {"ref": pull.base_ref}, "updated_at": _iso(pull.updated_at),
            "requested_reviewers": [_user(login) for login in pull.review_requested],
        },
        "repository": _repository(pull.repo, web), "sender": _user(pull.author),
    }


def github_check_run(pull: PullRequest, name: str, conclusion: str | None, *,
                     web: str = "https://github.com") -> dict:
    """The `check_run` event's payload for a check of the pull request's head commit."""
    completed = conclusion is not None
    return {
        "action": "completed" if completed else "created",
        "check_run": {
            "id": stable_id(f"{pull.repo}/{pull.head_sha}/{name}"), "name": name,
            "head_sha": pull.head_sha, "status": "completed" if completed else "in_progress",
            "conclusion": conclusion, "started_at": _iso(time.time()),
            "completed_at": _iso(time.time()) if completed else None,
            "check_suite": {"head_branch": pull.head_ref, "head_sha": pull.head_sha},
            "pull_requests": [{"number": pull.number, "head": {"ref": pull.head_ref,
                                                              "sha": pull.head_sha}}],
        },
        "repository": _repository(pull.repo, web), "sender": _user("github-actions[bot]"),
    }


def github_workflow_run(run: WorkflowRun, *, web: str = "https://github.com") -> dict:
    """The `workflow_run` event's payload."""
    return {
        "action": "completed" if run.status == "completed" else "in_progress",
        "workflow_run": {
            "id": run.id, "name": run.name, "head_branch": run.head_branch,
            "head_sha": run.head_sha, "status": run.status, "conclusion": run.conclusion,
            "event": run.event, "html_url": f"{web}/{run.repo}/actions/runs/{run.id}",
            "created_at": _iso(run.created_at), "updated_at": _iso(run.updated_at),
            "actor": _user(run.actor),
        },
        "repository": _repository(run.repo, web), "sender": _user(run.actor),
    }


def gitlab(event: str, payload: dict, token: str, *, delivery: str | None = None) -> Delivery:
    body = json.dumps(payload, separators=(",", ":")).encode()
    delivery = delivery or str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json", "User-Agent": "GitLab/17.6.0",
        "X-Gitlab-Event": event, "X-Gitlab-Instance": "https://gitlab.example.com",
        "X-Gitlab-Webhook-UUID": "4f0b8f1e-8d5e-4c8e-9a55-1f4a7c1a2b3c",
        "X-Gitlab-Event-UUID": delivery, "Idempotency-Key": delivery,
    }
    if token:
        headers["X-Gitlab-Token"] = token
    return Delivery("/v1/webhooks/gitlab", headers, body)


def _gitlab_project(path: str, web: str) -> dict:
    return {"id": stable_id(path), "name": path.rsplit("/", 1)[-1], "web_url": f"{web}/{path}",
            "path_with_namespace": path, "default_branch": "main"}


def gitlab_merge_request(mr: MergeRequest, action: str = "update", *,
                         web: str = "https://gitlab.example.com") -> dict:
    """The Merge Request Hook's payload."""
    return {
        "object_kind": "merge_request", "event_type": "merge_request",
        "user": {"id": stable_id(mr.author), "username": mr.author, "name": mr.author},
        "project": _gitlab_project(mr.project, web),
        "object_attributes": {
            "id": mr.id, "iid": mr.iid, "title": mr.title, "state": mr.state,
            "source_branch": mr.source_branch, "target_branch": mr.target_branch,
            "draft": mr.draft, "action": action, "updated_at": _iso(mr.updated_at),
            "last_commit": {"id": mr.sha}, "url": f"{web}/{mr.project}/-/merge_requests/{mr.iid}",
            "detailed_merge_status": mr.detailed_merge_status,
        },
        "reviewers": [{"username": name} for name in mr.reviewers],
    }


def gitlab_pipeline(pipeline: Pipeline, *, web: str = "https://gitlab.example.com") -> dict:
    """The Pipeline Hook's payload."""
    return {
        "object_kind": "pipeline",
        "object_attributes": {
            "id": pipeline.id, "iid": pipeline.iid, "ref": pipeline.ref, "sha": pipeline.sha,
            "status": pipeline.status, "source": pipeline.source,
            "created_at": _iso(pipeline.created_at), "finished_at": None,
            "url": f"{web}/{pipeline.project}/-/pipelines/{pipeline.id}",
        },
        "user": {"username": pipeline.username, "name": pipeline.username},
        "project": _gitlab_project(pipeline.project, web), "builds": [],
    }


def jira(payload: dict, secret: bytes, *, delivery: str | None = None,
         signature: str | None = None) -> Delivery:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Atlassian Webhook HTTP Client",
        "X-Atlassian-Webhook-Identifier": delivery or str(stable_id(str(uuid.uuid4()))),
        "X-Atlassian-Webhook-Flow": "Primary",
        "X-Hub-Signature": signature if signature is not None else
        "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
    }
    return Delivery("/v1/webhooks/jira", headers, body)


def jira_issue_updated(ticket: Ticket, site: str, *, field: str = "status",
                       before: str = "", after: str = "") -> dict:
    """The jira:issue_updated event's payload."""
    return {
        "timestamp": int(time.time() * 1000), "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": ticket.assignee_account_id or "acc-bot"},
        "issue": {
            "id": str(stable_id(ticket.key)), "key": ticket.key,
            "self": f"{site}/rest/api/3/issue/{stable_id(ticket.key)}",
            "fields": {"summary": ticket.summary, "status": {"name": ticket.status},
                       "project": {"key": ticket.project_key}},
        },
        "changelog": {"id": str(stable_id(f"{ticket.key}/{time.time()}")),
                      "items": [{"field": field, "fromString": before, "toString": after}]},
    }
