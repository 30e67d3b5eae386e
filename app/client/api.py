"""AmiShareClient: a small typed httpx client for the amishare HTTP API (docs/api.md).

Every non-2xx answer raises `ApiError` with the problem+json `detail` and field `errors`; a
server that cannot be reached raises `ApiUnreachableError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypedDict, TypeVar, cast

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0
MAX_PAGE = 500
FINISHED = frozenset({"succeeded", "partially_succeeded", "failed", "cancelled"})

KmsAccess = Literal["key_policy", "grant", "none"]
T = TypeVar("T")


class ErrorInfo(TypedDict):
    code: str
    message: str


class Progress(TypedDict):
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


# The answers' types, field for field as openapi/openapi.json has them (JobOut, TargetOut, …):
# tests/unit/client/test_api_types.py compares the two.
class Job(TypedDict):
    id: str
    action: str
    status: str
    image_id: str
    region: str
    source_account_id: str
    kms_access: str
    share_snapshots: bool
    verify: bool
    copy: dict[str, Any] | None
    labels: dict[str, str]
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: Progress
    error: ErrorInfo | None
    attempts: int
    reencrypt: dict[str, Any] | None
    regions: list[str]
    region_kms_key_ids: dict[str, str]
    shared_image_id: str | None
    repair: bool
    prune: bool
    destination_policy: dict[str, Any]


class Drift(TypedDict):
    missing: list[Literal["launch_permission", "snapshots", "kms_access"]]
    unrecorded: bool


class Target(TypedDict):
    principal: str
    principal_type: str
    region: str
    image_id: str | None
    status: str
    step: str
    attempts: int
    error: ErrorInfo | None
    note: str | None
    copied_image_id: str | None
    drift: Drift | None
    updated_at: str


class KeyAccess(TypedDict):
    kms_key_id: str
    key_policy: bool
    grant_ids: list[str]


class Share(TypedDict):
    image_id: str
    region: str
    principal: str
    principal_type: str
    kms_key_ids: list[str]
    snapshot_ids: list[str]
    shared_at: str
    job_id: str
    launch_permission: bool
    key_access: list[KeyAccess]
    source_image_id: str | None
    copied_image_id: str | None


class Event(TypedDict):
    id: int
    created_at: str
    api: str
    resource: str
    principals: list[str]
    request_id: str | None
    outcome: str
    message: str | None
    detail: dict[str, Any] | None


class PlannedTarget(TypedDict):
    principal: str
    principal_type: str
    region: str
    outcome: Literal["change", "no_change", "refused"]
    reason: str | None


class KeyPolicyChange(TypedDict):
    api: Literal["PutKeyPolicy"]
    resource: str
    region: str
    principals_added: list[str]
    principals_removed: list[str]
    policy_bytes_before: int
    policy_bytes_after: int


class GrantChange(TypedDict):
    api: Literal["CreateGrant", "RetireGrant"]
    resource: str
    region: str
    principals: list[str]


class PermissionChange(TypedDict):
    api: Literal["ModifySnapshotAttribute", "ModifyImageAttribute"]
    resource: str
    region: str
    add: list[str]
    remove: list[str]


class CopyChange(TypedDict):
    api: Literal["CopyImage"]
    resource: str
    account: str
    region: str


class KeptKeyAccess(TypedDict):
    principal: str
    kms_key_id: str
    needed_by: list[str]


class Plan(TypedDict):
    """POST /v1/plans: what a job with the same body would change; nothing is stored."""

    action: str
    image_id: str
    region: str
    regions: list[str]
    error: ErrorInfo | None
    targets: list[PlannedTarget]
    changes: list[KeyPolicyChange | GrantChange | PermissionChange | CopyChange]
    kept_key_access: list[KeptKeyAccess]
    destination_policy: dict[str, Any]


class Page(TypedDict, Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class ApiError(Exception):
    """A non-2xx answer: its status, the problem `detail` and, for a 422, each bad field."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[FieldError] | None = None,
        body: object = None,
    ) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.body = body


class ApiUnreachableError(Exception):
    """No HTTP answer at all: connection refused, DNS, timeout."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach amishare at {url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class JobPoll:
    """GET /v1/jobs/{id} with If-None-Match: `job` is None when unchanged (304)."""

    job: Job | None
    etag: str | None


@dataclass(frozen=True)
class JobRequest:
    """The body of POST /v1/jobs, as the CLI builds it."""

    action: Literal["share", "revoke", "reconcile"]
    image_id: str
    region: str
    account_ids: list[str] = field(default_factory=list)
    organization_arns: list[str] = field(default_factory=list)
    organizational_unit_arns: list[str] = field(default_factory=list)
    kms_access: KmsAccess | None = None
    share_snapshots: bool | None = None
    verify: bool | None = None
    copy: dict[str, Any] | None = None
    reencrypt: dict[str, Any] | None = None
    # Other Regions, each with the source's key for the image's copy there.
    region_kms_key_ids: dict[str, str] = field(default_factory=dict)
    regions: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    # reconcile only: grant again what AWS lost; take back what the ledger does not know.
    repair: bool = False
    prune: bool = False

    def body(self) -> dict[str, Any]:
        """Only what was given: the server's defaults apply to the rest."""
        body: dict[str, Any] = {
            "action": self.action,
            "image_id": self.image_id,
            "region": self.region,
            "account_ids": self.account_ids,
            "organization_arns": self.organization_arns,
            "organizational_unit_arns": self.organizational_unit_arns,
        }
        optional = {
            "kms_access": self.kms_access,
            "share_snapshots": self.share_snapshots,
            "verify": self.verify,
            "copy": self.copy,
            "reencrypt": self.reencrypt,
            "regions": self.regions or None,
            "region_kms_key_ids": self.region_kms_key_ids or None,
            "labels": self.labels or None,
            "repair": self.repair or None,
            "prune": self.prune or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


def _params(**values: object) -> dict[str, str | int]:
    return {k: v for k, v in values.items() if isinstance(v, str | int) and v != ""}


def _reason(error: httpx.TransportError) -> str:
    if isinstance(error, httpx.ConnectError):
        text = str(error).lower()
        return "connection refused" if "refused" in text else (str(error) or "cannot connect")
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return str(error) or type(error).__name__


def _field_errors(raw: object) -> list[FieldError]:
    if not isinstance(raw, list):
        return []
    return [
        FieldError(str(e.get("field", "?")), str(e.get("message", "")))
        for e in raw
        if isinstance(e, dict)
    ]


def api_error(response: httpx.Response) -> ApiError:
    """An ApiError from any non-2xx answer: problem+json, other JSON, or plain text."""
    try:
        body: object = response.json()
    except ValueError:
        text = response.text.strip()
        return ApiError(response.status_code, text[:300] or response.reason_phrase, body=text)
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or response.reason_phrase
        return ApiError(response.status_code, str(detail), _field_errors(body.get("errors")), body)
    return ApiError(response.status_code, response.reason_phrase, body=body)


def _decode(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; anything else is not an amishare server talking."""
    try:
        return response.json()
    except ValueError:
        detail = f"the answer from {response.url} is not JSON: is this an amishare server?"
        raise ApiError(response.status_code, detail) from None


class AmiShareClient:
    """The amishare API over HTTP. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "amishare-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- plumbing

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, params=params, json=json, headers=headers)
        except httpx.TransportError as error:
            raise ApiUnreachableError(self.base_url, _reason(error)) from error
        if response.status_code >= 400:
            raise api_error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return _decode(self._send(method, path, **kwargs))

    # ---------------------------------------------------------------- jobs

    def create_job(self, request: JobRequest | Mapping[str, Any]) -> Job:
        body = request.body() if isinstance(request, JobRequest) else dict(request)
        return cast(Job, self._json("POST", "/v1/jobs", json=body))

    def create_plan(self, request: JobRequest | Mapping[str, Any]) -> Plan:
        """What the job would change, from read calls only: no job is stored."""
        body = request.body() if isinstance(request, JobRequest) else dict(request)
        return cast(Plan, self._json("POST", "/v1/plans", json=body))

    def destination_policy(self, job_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._json("GET", f"/v1/jobs/{job_id}/destination-policy"))

    def get_job(self, job_id: str, etag: str | None = None) -> JobPoll:
        headers = {"If-None-Match": etag} if etag else None
        response = self._send("GET", f"/v1/jobs/{job_id}", headers=headers)
        new_etag = response.headers.get("ETag") or etag
        if response.status_code == 304:
            return JobPoll(None, new_etag)
        return JobPoll(cast(Job, _decode(response)), new_etag)

    def list_jobs(
        self,
        *,
        status: str | None = None,
        action: str | None = None,
        image_id: str | None = None,
        account_id: str | None = None,
        label: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Job]:
        params = _params(
            status=status,
            action=action,
            image_id=image_id,
            account_id=account_id,
            label=label,
            limit=limit,
            cursor=cursor,
        )
        return cast(Page[Job], self._json("GET", "/v1/jobs", params=params))

    def targets(
        self,
        job_id: str,
        *,
        status: str | None = None,
        limit: int = MAX_PAGE,
        cursor: str | None = None,
    ) -> Page[Target]:
        params = _params(status=status, limit=limit, cursor=cursor)
        return cast(Page[Target], self._json("GET", f"/v1/jobs/{job_id}/targets", params=params))

    def all_targets(self, job_id: str, *, status: str | None = None) -> Iterator[Target]:
        """Every target of the job (with `status`), following `next_cursor`."""
        return _follow(lambda cursor: self.targets(job_id, status=status, cursor=cursor))

    def cancel(self, job_id: str) -> Job:
        return cast(Job, self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def retry(self, job_id: str) -> Job:
        return cast(Job, self._json("POST", f"/v1/jobs/{job_id}/retry"))

    def events(
        self, job_id: str, *, limit: int = MAX_PAGE, cursor: str | None = None
    ) -> Page[Event]:
        params = _params(limit=limit, cursor=cursor)
        return cast(Page[Event], self._json("GET", f"/v1/jobs/{job_id}/events", params=params))

    def all_events(self, job_id: str) -> Iterator[Event]:
        return _follow(lambda cursor: self.events(job_id, cursor=cursor))

    # ---------------------------------------------------------------- shares

    def shares(
        self,
        *,
        image_id: str | None = None,
        region: str | None = None,
        principal: str | None = None,
        limit: int = MAX_PAGE,
        cursor: str | None = None,
    ) -> Page[Share]:
        params = _params(
            image_id=image_id, region=region, principal=principal, limit=limit, cursor=cursor
        )
        return cast(Page[Share], self._json("GET", "/v1/shares", params=params))

    def all_shares(
        self,
        *,
        image_id: str | None = None,
        region: str | None = None,
        principal: str | None = None,
    ) -> Iterator[Share]:
        return _follow(
            lambda cursor: self.shares(
                image_id=image_id, region=region, principal=principal, cursor=cursor
            )
        )


def _follow(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Items of every page: `fetch(cursor)` until `next_cursor` is null."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return
