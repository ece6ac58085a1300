"""Webhook deliveries from GitHub, GitLab and Jira: who sent them, and which sources they touch.

As each service documents its webhooks:

- GitHub signs the raw body with HMAC-SHA256 under the webhook's secret and sends
  `X-Hub-Signature-256: sha256=<hex>`; `X-GitHub-Event` names the event, `X-GitHub-Delivery`
  the delivery (the same on a redelivery). Every event that concerns a pull request or CI
  (pull_request, pull_request_review, check_suite, check_run, workflow_run, status, push)
  names `repository.full_name`.
- GitLab sends the secret token itself in `X-Gitlab-Token`; `X-Gitlab-Event` names the hook,
  `Idempotency-Key` (GitLab 17.4 and later) or `X-Gitlab-Event-UUID` the delivery; merge
  request, pipeline and push hooks name `project.path_with_namespace`.
- Jira Cloud's admin webhooks with a secret sign the raw body as GitHub does and send
  `X-Hub-Signature: sha256=<hex>` (WebSub's method=signature); `X-Atlassian-Webhook-Identifier`
  names the delivery (the same on a retry); `webhookEvent` says what happened
  (jira:issue_updated, ...) and `issue.key` which issue.

Every comparison with a secret is constant-time (hmac.compare_digest), over the exact bytes
received. Nothing of a delivery is read before its signature holds.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

# The largest delivery the hub reads. GitHub caps payloads at 25 MB, but those it cuts or that
# come near it are pushes of thousands of commits; the events the hub reads are a few dozen KB.
MAX_DELIVERY = 4 << 20
# Events whose delivery says nothing of the state the hub keeps are acknowledged and dropped.
GITHUB_EVENTS = ("pull_request", "pull_request_review", "pull_request_review_comment",
                 "check_suite", "check_run", "workflow_run", "workflow_job", "status", "push")
GITLAB_EVENTS = ("Merge Request Hook", "Pipeline Hook", "Push Hook", "Job Hook")


class Rejected(Exception):
    """A delivery the hub refuses: 401 for who sent it, 400 for what it is."""

    def __init__(self, status: int, code: str, message: str, suggestion: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.suggestion = status, code, message, suggestion


@dataclass(frozen=True)
class Delivery:
    """A delivery whose sender is proven: its id, its event, and what it names: a repository
    or project path (`part`), or None when it names no part (a Jira issue: every JQL of the
    instance may hold it)."""

    id: str
    event: str
    part: str | None
    relevant: bool


def github(headers: Mapping[str, str], body: bytes, secret: bytes) -> Delivery:
    _check_signature(headers.get("x-hub-signature-256", ""), body, secret,
                     "X-Hub-Signature-256", "GitHub")
    event = headers.get("x-github-event", "")
    delivery = headers.get("x-github-delivery", "")
    payload = _json(body)
    repository = payload.get("repository")
    name = repository.get("full_name") if isinstance(repository, dict) else None
    relevant = event in GITHUB_EVENTS
    if relevant and not isinstance(name, str):
        raise Rejected(400, "invalid_delivery", f"the {event} delivery names no "
                       "repository.full_name", "send deliveries of a repository or "
                       "organisation webhook")
    return Delivery(_delivery_id(delivery, "X-GitHub-Delivery"), event,
                    name if isinstance(name, str) else None, relevant)


def gitlab(headers: Mapping[str, str], body: bytes, secret: bytes) -> Delivery:
    sent = headers.get("x-gitlab-token", "").encode()
    if not sent:
        raise _unsigned("X-Gitlab-Token", "GitLab")
    if not hmac.compare_digest(sent, secret):
        raise _forged("X-Gitlab-Token", "GitLab")
    event = headers.get("x-gitlab-event", "")
    delivery = headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid", "")
    payload = _json(body)
    project = payload.get("project")
    path = project.get("path_with_namespace") if isinstance(project, dict) else None
    relevant = event in GITLAB_EVENTS
    if relevant and not isinstance(path, str):
        raise Rejected(400, "invalid_delivery", f"the {event} delivery names no "
                       "project.path_with_namespace", "send deliveries of a project or group "
                       "webhook")
    return Delivery(_delivery_id(delivery, "Idempotency-Key or X-Gitlab-Event-UUID"), event,
                    path if isinstance(path, str) else None, relevant)


def jira(headers: Mapping[str, str], body: bytes, secret: bytes) -> Delivery:
    _check_signature(headers.get("x-hub-signature", ""), body, secret, "X-Hub-Signature",
                     "Jira")
    payload = _json(body)
    event = payload.get("webhookEvent")
    delivery = headers.get("x-atlassian-webhook-identifier", "")
    event = event if isinstance(event, str) else ""
    return Delivery(_delivery_id(delivery, "X-Atlassian-Webhook-Identifier"), event, None,
                    event.startswith(("jira:issue_", "comment_", "sprint_", "issuelink_")))


def _check_signature(sent: str, body: bytes, secret: bytes, header: str, service: str) -> None:
    if not sent:
        raise _unsigned(header, service)
    method, _, digest = sent.partition("=")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    # Compared whole, in constant time, even when the method is wrong.
    if not hmac.compare_digest(f"{method}={digest}".encode(), f"sha256={expected}".encode()):
        raise _forged(header, service)


def _unsigned(header: str, service: str) -> Rejected:
    return Rejected(401, "unsigned", f"the delivery carries no {header} header",
                    f"set the same secret in the {service} webhook and in the hub's config")


def _forged(header: str, service: str) -> Rejected:
    return Rejected(401, "bad_signature", f"the {header} header does not match this body and "
                    "the configured secret",
                    f"set the same secret in the {service} webhook and in the hub's config")


def _delivery_id(value: str, header: str) -> str:
    value = value.strip()
    if not value or len(value) > 128 or not value.isprintable():
        raise Rejected(400, "invalid_delivery", f"the delivery has no usable {header} header",
                       "send deliveries as the service sends them")
    return value


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        raise Rejected(400, "invalid_delivery", "the delivery's body is not a JSON object",
                       "send the webhook with content type application/json")
    return payload
