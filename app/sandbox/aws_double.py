"""The project's AWS double: moto (with `moto_ext`) behind a recording, fault-injecting middleware.

In process:
    double = start()                      # 127.0.0.1, free port, patches installed
    boto3.client("ec2", endpoint_url=double.url, ...)
    double.set_faults(throttle_rate=0.2, seed=7)
    double.requests()                     # what the code under test called, in order
    double.stop()

It is served by uvicorn with keep-alive; moto itself runs on the event loop's thread, one call
at a time, while calls in flight wait their injected latency side by side (see LatencyFront).

Standalone (multi-process tests, benchmarks):
    python -m app.sandbox.aws_double --port 0 --latency-ms 20 --throttle-rate 0.1
prints `READY http://127.0.0.1:PORT` once listening and stops cleanly on SIGTERM/SIGINT.

HTTP control endpoints (never AWS paths), all JSON:
    GET    /_amishare/requests[?since=N]   recorded AWS calls with index >= N
    DELETE /_amishare/requests             forget them
    GET    /_amishare/faults               current FaultConfig
    PUT    /_amishare/faults               replace it (fields of FaultConfig; missing = default)
    GET    /_amishare/unknown-accounts     accounts that "do not exist"
    PUT    /_amishare/unknown-accounts     replace them (JSON list of account IDs)
    PUT    /_amishare/accounts             open accounts ({"accounts": [...], "region": "…"})
    POST   /_amishare/reset                moto state, requests, faults, unknown accounts

Faults: `latency_ms` delays every AWS call. `throttle_rate` (0..1) answers mutating calls (or
all calls with `throttle_all_calls`) with the service's throttling error: EC2
`RequestLimitExceeded` (503, XML), KMS `ThrottlingException` (400, JSON), STS `Throttling` (400,
XML). `error_rate` answers with a 500 (`InternalError`; KMS: `KMSInternalException`).
`actions`, when not empty, limits throttling and 5xx to those action names. `deny_accounts`:
every call by those accounts gets `UnauthorizedOperation` (EC2, 403) / `AccessDeniedException`
(KMS) / `AccessDenied` (STS, 403). `deny_assume_role_into`: STS `AssumeRole` into a role of
those accounts gets `AccessDenied`. `credential_lifetime_seconds` (0 = off; standalone:
`--credential-lifetime-seconds`): a call signed with credentials STS AssumeRole issued longer
ago than that is answered as AWS answers expired session credentials, before any other fault:
EC2 `RequestExpired` "Request has expired." (400, XML), KMS `ExpiredTokenException` (400, JSON)
and STS `ExpiredToken` (400, XML) "The security token included in the request is expired";
recorded with fault "expired". Long-term keys (the fake `testing` ones) never expire.
`refuse_accounts`: a mutating call whose parameters name one of these accounts is refused as
AWS refuses a principal it does not accept (EC2 `InvalidAMIAttributeItemValue`, KMS
`MalformedPolicyDocumentException`, CreateGrant `InvalidArnException`); with `actions`, only
in those actions (e.g. an account refused at launch permission after its key step).
Decisions draw from `random.Random(seed)`.

CopyImage copies (moto_ext models them; these fields are not middleware faults: `actions` does
not scope them): a copy is `pending` for `copy_seconds` (0, the default: available at once),
then `available`, or `failed` with StateReason `Server.InternalError` "Copy image failed with an
internal error." when its caller's account is in `copy_fail_accounts`, its Name matches one of
`copy_fail_names` (fnmatch patterns) or a draw from random.Random(seed) is below
`copy_fail_rate`. `max_pending_copies` (default 50, AWS's documented limit; 0: none) pending
copies per account and Region; one more is `ResourceLimitExceeded`. Changes apply to copies
started afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment
from xml.sax.saxutils import escape

import uvicorn
from moto.core.parse import PROTOCOL_PARSERS, RequestDict
from moto.core.utils import get_service_model
from moto.ec2.models import ec2_backends
from moto.iam.models import iam_backends
from moto.kms.models import kms_backends
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition
from starlette.types import Receive, Scope, Send
from uvicorn.middleware.wsgi import build_environ
from werkzeug.datastructures import Headers, MultiDict
from werkzeug.wrappers import Request, Response

from app.sandbox import moto_ext

CONTROL_PREFIX = "/_amishare/"
MOTO_API_PREFIX = "/moto-api"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOAD_DEFAULT_AMIS_ENV = "MOTO_EC2_LOAD_DEFAULT_AMIS"

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([\w-]+)/([\w-]+)/aws4_request")
_ROLE_ACCOUNT = re.compile(r"^arn:[\w-]+:iam::(\d{12}):role/")
_READ_PREFIXES = ("Describe", "Get", "List")
_NOT_MUTATING = frozenset(
    {
        "AssumeRole",
        "Decrypt",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateRandom",
        "ReEncrypt",
        "Sign",
        "Verify",
    }
)
_STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"


def is_mutating(action: str) -> bool:
    """Whether an AWS action changes state (the calls `throttle_rate` applies to by default)."""
    return bool(action) and not action.startswith(_READ_PREFIXES) and action not in _NOT_MUTATING


# --------------------------------------------------------------------------------------------
# Configuration and records
# --------------------------------------------------------------------------------------------


def _string_tuple(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(str(item) for item in value)


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("throttle_all_calls must be true or false")
    return value


_FLOAT_FIELDS = (
    "latency_ms",
    "throttle_rate",
    "error_rate",
    "credential_lifetime_seconds",
    "copy_seconds",
    "copy_fail_rate",
)
_LIST_FIELDS = (
    "actions",
    "deny_accounts",
    "deny_assume_role_into",
    "refuse_accounts",
    "copy_fail_accounts",
    "copy_fail_names",
)


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: float = 0.0
    throttle_rate: float = 0.0
    throttle_all_calls: bool = False
    error_rate: float = 0.0
    actions: tuple[str, ...] = ()
    deny_accounts: tuple[str, ...] = ()
    deny_assume_role_into: tuple[str, ...] = ()
    credential_lifetime_seconds: float = 0.0
    refuse_accounts: tuple[str, ...] = ()
    copy_seconds: float = 0.0
    copy_fail_rate: float = 0.0
    copy_fail_accounts: tuple[str, ...] = ()
    copy_fail_names: tuple[str, ...] = ()
    max_pending_copies: int = moto_ext.DEFAULT_MAX_PENDING_COPIES
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS:
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in _LIST_FIELDS:
            object.__setattr__(self, name, _string_tuple(name, getattr(self, name)))
        object.__setattr__(self, "throttle_all_calls", _boolean(self.throttle_all_calls))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "max_pending_copies", int(self.max_pending_copies))
        for name in ("throttle_rate", "error_rate", "copy_fail_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in ("latency_ms", "credential_lifetime_seconds", "copy_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_pending_copies < 0:
            raise ValueError("max_pending_copies must not be negative")

    def copy_settings(self) -> moto_ext.CopySettings:
        """What moto_ext's CopyImage reads of this configuration."""
        return moto_ext.CopySettings(
            seconds=self.copy_seconds,
            fail_rate=self.copy_fail_rate,
            fail_accounts=frozenset(self.copy_fail_accounts),
            fail_names=self.copy_fail_names,
            max_pending=self.max_pending_copies,
            seed=self.seed,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


@dataclass(frozen=True)
class RecordedRequest:
    """One AWS call that reached the double. `params` is set for mutating calls and AssumeRole."""

    index: int
    timestamp: float
    account: str
    service: str
    action: str
    region: str
    mutating: bool
    params: dict[str, Any] | None
    status: int
    fault: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _AwsCall:
    account: str
    service: str
    action: str
    region: str
    params: dict[str, Any] | None  # only for mutating calls and AssumeRole
    access_key: str = ""

    @property
    def mutating(self) -> bool:
        return is_mutating(self.action)


@dataclass(frozen=True)
class _Fault:
    name: str
    status: int
    code: str
    message: str


# --------------------------------------------------------------------------------------------
# Reading requests
# --------------------------------------------------------------------------------------------


def _read_body(environ: WSGIEnvironment) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


def _caller_account(environ: WSGIEnvironment, access_key: str) -> str:
    """The account moto will act as (same precedence as moto's BaseResponse)."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return str(environ["HTTP_X_MOTO_ACCOUNT_ID"])
    return moto_ext.account_id_from(access_key)


def _query_params(service: str, action: str, form: dict[str, str]) -> dict[str, Any]:
    """Structured parameters (as boto3 names them), parsed with moto's own request parser."""
    try:
        model = get_service_model(service)
        parser = PROTOCOL_PARSERS[str(model.protocol)](model.operation_model(action))
        request = RequestDict(
            method="POST",
            values=MultiDict(form),
            headers=Headers(),
            body=b"",
            url_path="/",
            url_params={},
        )
        return dict(parser.parse(request))
    except Exception:  # any model/parse failure: keep the raw form fields
        return {k: v for k, v in form.items() if k not in ("Action", "Version")}


def _json_params(body: bytes) -> dict[str, Any]:
    try:
        loaded = json.loads(body or b"{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _keeps_params(action: str) -> bool:
    return is_mutating(action) or action == "AssumeRole"


def _describe_call(environ: WSGIEnvironment) -> _AwsCall:
    body = _read_body(environ)
    match = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    access_key, region, service = match.groups() if match else ("AKIAEXAMPLE", "", "")
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target:
        action = target.rsplit(".", 1)[-1]
        params = _json_params(body) if _keeps_params(action) else None
    else:
        form = dict(parse_qsl(str(environ.get("QUERY_STRING", ""))))
        form.update(parse_qsl(body.decode("utf-8", "replace")))
        action = form.get("Action", "")
        params = _query_params(service, action, form) if _keeps_params(action) else None
    account = _caller_account(environ, access_key)
    return _AwsCall(account, service, action, region, params, access_key)


# --------------------------------------------------------------------------------------------
# Error bodies in each service's wire format
# --------------------------------------------------------------------------------------------


def _error_body(service: str, code: str, message: str) -> tuple[str, bytes]:
    request_id = str(uuid.uuid4())
    if service == "kms":
        body = json.dumps({"__type": code, "message": message})
        return "application/x-amz-json-1.1", body.encode()
    error = f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
    if service == "ec2":
        errors = f"<Errors><Error>{error}</Error></Errors>"
        xml = f"<Response>{errors}<RequestID>{request_id}</RequestID></Response>"
    else:
        xml = (
            f'<ErrorResponse xmlns="{_STS_NAMESPACE}"><Error><Type>Sender</Type>{error}</Error>'
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    return "text/xml", f'<?xml version="1.0" encoding="UTF-8"?>\n{xml}'.encode()


def _throttle_fault(service: str) -> _Fault:
    if service == "ec2":
        return _Fault("throttle", 503, "RequestLimitExceeded", "Request limit exceeded.")
    code = "ThrottlingException" if service == "kms" else "Throttling"
    return _Fault("throttle", 400, code, "Rate exceeded")


def _server_fault(service: str) -> _Fault:
    code = "KMSInternalException" if service == "kms" else "InternalError"
    return _Fault("error", 500, code, "We encountered an internal error. Please try again.")


def _expired_fault(service: str) -> _Fault:
    if service == "ec2":
        return _Fault("expired", 400, "RequestExpired", "Request has expired.")
    code = "ExpiredTokenException" if service == "kms" else "ExpiredToken"
    return _Fault("expired", 400, code, "The security token included in the request is expired")


def _credentials_expired(call: _AwsCall, lifetime_seconds: float) -> bool:
    if lifetime_seconds <= 0:
        return False
    age = moto_ext.credentials_age(call.access_key)
    return age is not None and age > lifetime_seconds


def _deny_fault(call: _AwsCall) -> _Fault:
    if call.service == "ec2":
        message = "You are not authorized to perform this operation."
        return _Fault("deny", 403, "UnauthorizedOperation", message)
    action = f"{call.service}:{call.action}"
    message = f"User: arn:aws:iam::{call.account}:root is not authorized to perform: {action}"
    if call.service == "kms":
        return _Fault("deny", 400, "AccessDeniedException", message)
    return _Fault("deny", 403, "AccessDenied", message)


def _named_account(call: _AwsCall, accounts: Sequence[str]) -> str | None:
    """The first of `accounts` that a mutating call names in its parameters."""
    if not accounts or not call.mutating or not call.params:
        return None
    text = json.dumps(call.params, default=str)
    return next((a for a in accounts if a in text), None)


def _refusal_fault(call: _AwsCall, account_id: str) -> _Fault:
    """As AWS refuses a principal it does not accept, in each API's own terms."""
    if call.service == "kms" and call.action == "CreateGrant":
        return _Fault("refuse", 400, "InvalidArnException", f"Invalid principal: {account_id}")
    if call.service == "kms":
        message = "Policy contains a statement with one or more invalid principals."
        return _Fault("refuse", 400, "MalformedPolicyDocumentException", message)
    message = f'Invalid attribute item value "{account_id}" for userId item type.'
    return _Fault("refuse", 400, "InvalidAMIAttributeItemValue", message)


def _assume_role_target(call: _AwsCall) -> str | None:
    if call.service != "sts" or call.action != "AssumeRole":
        return None
    match = _ROLE_ACCOUNT.match(str((call.params or {}).get("RoleArn", "")))
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------
# State shared by the middleware and the Python API
# --------------------------------------------------------------------------------------------


@dataclass
class DoubleControl:
    """Request log, fault configuration and the seeded RNG behind the middleware."""

    faults: FaultConfig = field(default_factory=FaultConfig)
    _records: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))

    def set_faults(self, config: FaultConfig) -> None:
        with self._lock:
            self.faults = config
            self._rng = random.Random(config.seed)
            moto_ext.set_copy_settings(config.copy_settings())

    def requests(self, since: int = 0) -> list[RecordedRequest]:
        with self._lock:
            return self._records[max(since, 0) :]

    def clear_requests(self) -> None:
        with self._lock:
            self._records.clear()

    def record(self, call: _AwsCall, started: float, status: int, fault: str | None) -> None:
        with self._lock:
            self._records.append(
                RecordedRequest(
                    index=len(self._records),
                    timestamp=started,
                    account=call.account,
                    service=call.service,
                    action=call.action,
                    region=call.region,
                    mutating=call.mutating,
                    params=call.params,
                    status=status,
                    fault=fault,
                )
            )

    def choose_fault(self, call: _AwsCall) -> _Fault | None:
        config = self.faults
        if _credentials_expired(call, config.credential_lifetime_seconds):
            return _expired_fault(call.service)
        if call.account in config.deny_accounts:
            return _deny_fault(call)
        if _assume_role_target(call) in config.deny_assume_role_into:
            role_arn = (call.params or {}).get("RoleArn")
            message = f"Not authorized to perform sts:AssumeRole on {role_arn}"
            return _Fault("deny", 403, "AccessDenied", message)
        if config.actions and call.action not in config.actions:
            return None
        refused = _named_account(call, config.refuse_accounts)
        if refused is not None:
            return _refusal_fault(call, refused)
        if (call.mutating or config.throttle_all_calls) and self._draw(config.throttle_rate):
            return _throttle_fault(call.service)
        if self._draw(config.error_rate):
            return _server_fault(call.service)
        return None

    def _draw(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < rate


# --------------------------------------------------------------------------------------------
# The middleware
# --------------------------------------------------------------------------------------------


def _json_response(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


# Services whose requests the middleware routes straight to moto's app for that service.
_DISPATCH_CACHED_SERVICES = frozenset({"ec2", "kms", "sts"})


class AwsDoubleMiddleware:
    """WSGI middleware around moto's app: control endpoints, request log, fault injection."""

    def __init__(self, app: WSGIApplication, control: DoubleControl) -> None:
        self.app = app
        self.control = control
        self._service_apps: dict[str, WSGIApplication] = {}
        self._apps_lock = threading.Lock()

    def _service_app(self, service: str, environ: WSGIEnvironment) -> WSGIApplication:
        """Moto's app for one service, found once. Moto finds it anew on every request, under
        one process-wide lock and with file-system scans: that made the double serve ~80
        calls/s whatever the number of threads."""
        app = self._service_apps.get(service)
        if app is not None:
            return app
        get_application = getattr(self.app, "get_application", None)
        if get_application is None or service not in _DISPATCH_CACHED_SERVICES:
            return self.app
        with self._apps_lock:
            app = self._service_apps.setdefault(service, get_application(environ))
        return app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response)
        if path.startswith(MOTO_API_PREFIX):
            return self.app(environ, start_response)
        return self._aws(environ, start_response)

    def _aws(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.time()
        call = _describe_call(environ)
        fault = self.control.choose_fault(call)
        if fault is not None:
            self.control.record(call, started, fault.status, fault.name)
            return self._fault(call, fault, start_response)
        statuses: list[int] = []

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info)

        app = self._service_app(call.service, environ)
        result = app(environ, recording_start_response)
        self.control.record(call, started, statuses[0] if statuses else 0, None)
        return result

    @staticmethod
    def _fault(call: _AwsCall, fault: _Fault, start_response: StartResponse) -> Iterable[bytes]:
        content_type, body = _error_body(call.service, fault.code, fault.message)
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ]
        start_response(f"{fault.status} {HTTPStatus(fault.status).phrase}", headers)
        return [body]

    def _control(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._control_response(request)
        except (ValueError, TypeError) as exc:
            response = _json_response({"error": str(exc)}, status=400)
        return response(environ, start_response)

    def _control_response(self, request: Request) -> Response:
        route = (request.method, request.path[len(CONTROL_PREFIX) :].strip("/"))
        control = self.control
        if route == ("GET", "requests"):
            since = int(request.args.get("since", "0"))
            return _json_response([r.to_json() for r in control.requests(since)])
        if route == ("DELETE", "requests"):
            control.clear_requests()
            return _json_response({"cleared": True})
        if route == ("GET", "faults"):
            return _json_response(control.faults.to_json())
        if route == ("PUT", "faults"):
            control.set_faults(FaultConfig.from_json(_json_object(request)))
            return _json_response(control.faults.to_json())
        if route == ("GET", "unknown-accounts"):
            return _json_response(sorted(moto_ext.unknown_accounts()))
        if route == ("PUT", "unknown-accounts"):
            moto_ext.set_unknown_accounts(_json_account_list(request))
            return _json_response(sorted(moto_ext.unknown_accounts()))
        if route == ("PUT", "accounts"):
            data = _json_object(request)
            accounts = [str(a) for a in data.get("accounts", [])]
            open_accounts(accounts, str(data.get("region", "us-east-1")))
            return _json_response({"opened": len(accounts)})
        if route == ("POST", "reset"):
            reset_everything(control)
            return _json_response({"reset": True})
        return _json_response({"error": f"no control endpoint {route[0]} {request.path}"}, 404)


def open_accounts(account_ids: Iterable[str], region: str) -> None:
    """Let these accounts exist before anything shares with them, as real accounts do: moto
    builds an account's EC2, KMS, IAM and STS state (default VPC, subnets, …) on its first
    call, under one process-wide lock, which would otherwise be charged to whatever first
    calls from that account."""
    partition = get_partition(region)
    for account_id in account_ids:
        if not re.fullmatch(r"[0-9]{12}", account_id):
            raise ValueError(f"not an account ID: {account_id!r}")
        ec2_backends[account_id][region]
        kms_backends[account_id][region]
        iam_backends[account_id][partition]
        sts_backends[account_id][partition]


def _json_object(request: Request) -> dict[str, Any]:
    data = json.loads(request.get_data() or b"{}")
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _json_account_list(request: Request) -> list[str]:
    data = json.loads(request.get_data() or b"[]")
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of account IDs")
    return [str(a) for a in data]


def reset_moto() -> None:
    """Forget every AWS resource in every account and region (patches stay installed)."""
    moto_api_backend.reset()
    moto_ext.forget_lookups()
    moto_ext.forget_copies()


def reset_everything(control: DoubleControl) -> None:
    reset_moto()
    control.clear_requests()
    control.set_faults(FaultConfig())
    moto_ext.set_unknown_accounts(())


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def build_app(control: DoubleControl) -> AwsDoubleMiddleware:
    """moto's server app (as ThreadedMotoServer builds it) wrapped in the middleware."""
    return AwsDoubleMiddleware(DomainDispatcherApplication(create_backend_app), control)


@dataclass
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class LatencyFront:
    """The double as an ASGI app: every AWS call waits the injected latency here, on the event
    loop, so a thousand calls in flight wait side by side, as they would against AWS.

    Then moto answers the call right on the loop's thread: its work is a fraction of a
    millisecond of Python, and handing each call to a thread pool (and the answer back) cost
    more than the work, in GIL hand-offs. Control calls, which can take seconds (opening 1,000
    accounts), go to a small pool instead.
    """

    def __init__(self, app: AwsDoubleMiddleware, *, workers: int = 8) -> None:
        self.app = app
        self.control = app.control
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aws-double")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; no websockets
        path = str(scope.get("path", ""))
        latency_ms = self.control.faults.latency_ms
        if latency_ms > 0 and not path.startswith((CONTROL_PREFIX, MOTO_API_PREFIX)):
            await asyncio.sleep(latency_ms / 1000.0)
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        environ = dict(build_environ(scope, message, io.BytesIO(bytes(body))))  # type: ignore[arg-type]
        if path.startswith((CONTROL_PREFIX, MOTO_API_PREFIX)):
            # Control calls can take seconds (opening 1,000 accounts): off the loop.
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(self._pool, self._answer, environ)
        else:
            answer = self._answer(environ)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})

    def _answer(self, environ: WSGIEnvironment) -> _Answer:
        started: list[_Answer] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            started[:] = [_Answer(int(status.split(" ", 1)[0]), encoded, b"")]
            return chunks.append  # WSGI's write()

        result = self.app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        answer = started[0]
        answer.body = b"".join(chunks)
        return answer

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class AwsDouble:
    """A running double: `url`, the request log, faults, reset and stop."""

    def __init__(self, server: uvicorn.Server, listener: socket.socket, control: DoubleControl):
        self._server = server
        self._listener = listener
        self.control = control
        self._thread = threading.Thread(target=self._serve, name="amishare-aws-double", daemon=True)

    def _serve(self) -> None:
        self._server.run(sockets=[self._listener])

    @property
    def host(self) -> str:
        return str(self._listener.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_in_background(self, timeout: float = 10.0) -> None:
        """Serve in a thread; returns once the double answers."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the AWS double did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._listener.close()
        front = self._server.config.app
        if isinstance(front, LatencyFront):
            front.close()

    def requests(self, since: int = 0) -> list[RecordedRequest]:
        return self.control.requests(since)

    def clear_requests(self) -> None:
        self.control.clear_requests()

    def faults(self) -> FaultConfig:
        return self.control.faults

    def set_faults(self, config: FaultConfig | None = None, **settings: Any) -> FaultConfig:
        """Replace the fault configuration: a FaultConfig, or its fields as keywords."""
        new = replace(config or FaultConfig(), **settings) if settings else config or FaultConfig()
        self.control.set_faults(new)
        return new

    def set_unknown_accounts(self, ids: Iterable[str]) -> None:
        moto_ext.set_unknown_accounts(ids)

    def open_accounts(self, ids: Iterable[str], region: str = "us-east-1") -> None:
        open_accounts(ids, region)

    def reset(self) -> None:
        """Fresh double: no AWS resources, no recorded requests, no faults, no unknown accounts."""
        reset_everything(self.control)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose protocol says TCP, and
    # without it every answer waits ~40 ms for a delayed ACK.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)
    return listener


def start(
    port: int = 0,
    host: str = "127.0.0.1",
    faults: FaultConfig | None = None,
    load_default_amis: bool | None = None,
) -> AwsDouble:
    """Install the moto patches and serve the double on a loopback address in a thread.

    It is served by uvicorn (HTTP/1.1 keep-alive): moto's own werkzeug server closes the
    connection after every answer and waits 10 ms before closing it.

    moto's ~1300 public AMIs per account and region are not loaded unless `load_default_amis`
    (or MOTO_EC2_LOAD_DEFAULT_AMIS=true when it is None): they cost 0.25 s per new account.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the AWS double binds to loopback only, not {host!r}")
    moto_ext.install()
    if load_default_amis is None:
        os.environ.setdefault(LOAD_DEFAULT_AMIS_ENV, "false")
    else:
        os.environ[LOAD_DEFAULT_AMIS_ENV] = "true" if load_default_amis else "false"
    for service in _DISPATCH_CACHED_SERVICES:
        # Parsed once here: the first burst of concurrent calls would each parse it (50 ms).
        get_service_model(service)
    control = DoubleControl()
    control.set_faults(faults or FaultConfig())
    config = uvicorn.Config(
        LatencyFront(build_app(control)),
        lifespan="off",
        loop="asyncio",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=60,
    )
    double = AwsDouble(uvicorn.Server(config), _listen(host, port), control)
    double.serve_in_background()
    return double


# --------------------------------------------------------------------------------------------
# Standalone process
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="amishare's AWS double (moto + extension)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", choices=sorted(LOOPBACK_HOSTS))
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--throttle-all-calls", action="store_true")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument(
        "--credential-lifetime-seconds",
        type=float,
        default=0.0,
        help="STS credentials older than this are answered as expired (0: never)",
    )
    parser.add_argument("--copy-seconds", type=float, default=0.0, help="CopyImage pending time")
    parser.add_argument("--copy-fail-rate", type=float, default=0.0)
    parser.add_argument(
        "--max-pending-copies",
        type=int,
        default=moto_ext.DEFAULT_MAX_PENDING_COPIES,
        help="pending CopyImage copies per account and Region (0: no limit)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unknown-accounts", default="", help="comma-separated account IDs")
    parser.add_argument("--load-default-amis", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        throttle_rate=args.throttle_rate,
        throttle_all_calls=args.throttle_all_calls,
        error_rate=args.error_rate,
        credential_lifetime_seconds=args.credential_lifetime_seconds,
        copy_seconds=args.copy_seconds,
        copy_fail_rate=args.copy_fail_rate,
        max_pending_copies=args.max_pending_copies,
        seed=args.seed,
    )
    load_default_amis = True if args.load_default_amis else None
    double = start(args.port, args.host, faults, load_default_amis=load_default_amis)
    if args.unknown_accounts:
        moto_ext.set_unknown_accounts(a for a in args.unknown_accounts.split(",") if a)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    print(f"READY {double.url}", flush=True)
    while not stopping.wait(0.5):
        pass
    double.stop()


if __name__ == "__main__":
    main()
