"""Send operational alerts to Slack, a generic webhook, e-mail and PagerDuty.

:meth:`AlertDispatcher.dispatch` never raises: each destination's delivery ends as
a :class:`DeliveryResult` (``ok=False`` with an ``error`` on failure) that the caller
logs. Transient failures (connection errors, timeouts, HTTP 429 and 5xx, SMTP 4xx
replies) are retried a few times with backoff; permanent ones (other 4xx, SMTP 5xx,
authentication) are not, since repeating them cannot help and only delays the rest.

Secrets never appear in ``repr``/``str`` of destinations, in ``DeliveryResult.error``
or in log messages: webhook URLs (Slack's carries its token in the path), header
values, PagerDuty routing keys and SMTP passwords are masked, and error texts from
libraries are scrubbed of them before they are kept.

Configuration from the environment (:meth:`AlertDispatcher.from_env`); every
destination is optional and enabled by setting its first variable:

``CALIBR_ALERT_SLACK_WEBHOOK_URL``
    Slack incoming-webhook URL.
``CALIBR_ALERT_WEBHOOK_URL``
    Generic webhook receiving the alert as JSON. ``CALIBR_ALERT_WEBHOOK_AUTHORIZATION``
    (optional) is sent as the ``Authorization`` header.
``CALIBR_ALERT_SMTP_HOST``
    SMTP server; with ``CALIBR_ALERT_SMTP_PORT`` (default 587 with STARTTLS, 465
    with SSL, else 25), ``CALIBR_ALERT_SMTP_FROM`` (required), ``CALIBR_ALERT_SMTP_TO``
    (required, comma-separated), ``CALIBR_ALERT_SMTP_USER`` / ``CALIBR_ALERT_SMTP_PASSWORD``
    (optional login), ``CALIBR_ALERT_SMTP_STARTTLS`` and ``CALIBR_ALERT_SMTP_SSL``
    (``true``/``false``, default false).
``CALIBR_ALERT_PAGERDUTY_ROUTING_KEY``
    PagerDuty Events API v2 integration key. ``CALIBR_ALERT_PAGERDUTY_URL`` overrides
    the events endpoint (sandbox, tests). ``CALIBR_ALERT_PAGERDUTY_MIN_SEVERITY``
    (default ``error``): pages wake people up, so warnings do not page by default.
``CALIBR_ALERT_MIN_SEVERITY``
    ``info`` (default), ``warning``, ``error`` or ``critical``: alerts below it go
    nowhere. A destination's own minimum applies on top of this one.

A malformed value raises :class:`AlertConfigError` naming the variable, at start-up
rather than when the first alert is lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from email.message import EmailMessage
from enum import Enum
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from calibr_pipeline.domain.backoff import RetryPolicy, retrying_from_policy
from calibr_pipeline.domain.errors import CalibrError

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error", "critical")
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
_EMOJI = {"info": ":information_source:", "warning": ":warning:", "error": ":x:", "critical": ":rotating_light:"}
MASK = "***"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
DEFAULT_RETRY = RetryPolicy(max_attempts=3, base_seconds=0.5, multiplier=2.0, jitter=0.2, max_seconds=5.0, retry_after_cap=10.0)


class AlertConfigError(CalibrError, ValueError):
    """Alerting is configured wrongly. The message names the setting, never its secret value."""


def _check_severity(value: str, what: str) -> Severity:
    normalized = str(value).strip().lower()
    if normalized not in _RANK:
        raise AlertConfigError(f"{what} must be one of {', '.join(SEVERITIES)}, got {value!r}")
    return normalized  # type: ignore[return-value]


# --------------------------------------------------------------------------- alert


@dataclass(frozen=True)
class AlertAttachment:
    """A file sent with an alert by e-mail (e.g. a digest chart); other destinations name it."""

    filename: str
    content_type: str  # "image/png", "text/markdown", ...
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Alert:
    severity: Severity
    title: str
    message: str
    source: str
    tenant: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    attachments: tuple[AlertAttachment, ...] = ()
    link: str | None = None  # where the full content lives (UI, report)

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", _check_severity(self.severity, "Alert severity"))
        if not self.title or not self.title.strip():
            raise ValueError("an alert needs a title")
        if not self.source or not self.source.strip():
            raise ValueError("an alert needs a source (e.g. the asset check key)")

    @property
    def key(self) -> str:
        """The dedup key, or a stable one derived from source, tenant and title so
        that the same problem reported every run updates one incident, not many."""
        if self.dedup_key:
            return self.dedup_key
        digest = hashlib.sha256(f"{self.source}\x00{self.tenant or ''}\x00{self.title}".encode()).hexdigest()
        return f"calibr-{digest[:32]}"

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "title": self.title,
            "message": self.message,
            "source": self.source,
            "tenant": self.tenant,
            "details": _jsonable(dict(self.details)),
            "dedup_key": self.key,
            **({"link": self.link} if self.link else {}),
            **({"attachments": [a.filename for a in self.attachments]} if self.attachments else {}),
        }


def _jsonable(value: Any) -> Any:
    # Decimal as a string keeps money exact; float() would not.
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DeliveryResult:
    destination: str
    ok: bool
    attempts: int
    error: str | None = None
    status_code: int | None = None


class DeliveryError(Exception):
    """A failed send. ``transient`` decides whether the dispatcher retries."""

    def __init__(self, message: str, *, transient: bool, status_code: int | None = None, retry_after: str | None = None):
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status_code = status_code
        self.retry_after = retry_after


# --------------------------------------------------------------------------- masking


def mask_url(url: str) -> str:
    """``scheme://host[:port]/***``: enough to tell destinations apart, no token."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    tail = f"/{MASK}" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def _url_secrets(url: str) -> list[str]:
    parts = urlsplit(url)
    secrets = [url, parts.path, parts.query, parts.netloc.rpartition("@")[0]]
    # Path segments too: libraries quote URLs partially ("url: /services/T/B/x").
    secrets += [seg for seg in parts.path.split("/") if _looks_like_token(seg)]
    return [s for s in secrets if s and s not in ("/",)]


def _looks_like_token(segment: str) -> bool:
    has_digit = any(c.isdigit() for c in segment)
    has_alpha = any(c.isalpha() for c in segment)
    return len(segment) >= 16 or (len(segment) >= 6 and has_digit and has_alpha)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


class _RedactingFilter(logging.Filter):
    """Scrubs registered secrets from records of libraries that log request URLs.

    urllib3 logs every request line (``POST /services/T/B/<token>``) at DEBUG; a
    debug session must not put a Slack token in the logs.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def register(self, secrets: Sequence[str]) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = list(self._secrets)
        if secrets:
            try:
                text = record.getMessage()
            except Exception:  # a malformed record is logging's problem, not ours
                return True
            scrubbed = _scrub(text, secrets)
            if scrubbed != text:
                record.msg, record.args = scrubbed, ()
        return True


_REDACTOR = _RedactingFilter()
for _name in ("urllib3.connectionpool", "requests"):
    logging.getLogger(_name).addFilter(_REDACTOR)


# --------------------------------------------------------------------------- destinations


class AlertDestination:
    """Base class. Subclasses implement :meth:`send` and say what to mask."""

    kind = "destination"

    def __init__(self, *, min_severity: Severity = "info"):
        self.min_severity = _check_severity(min_severity, f"{self.kind} min_severity")

    @property
    def name(self) -> str:
        """A description safe to log."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        return []

    def admits(self, alert: Alert) -> bool:
        return _RANK[alert.severity] >= _RANK[self.min_severity]

    def send(self, alert: Alert, *, timeout: float) -> int | None:
        """Deliver once; return the status code if any. Raise DeliveryError on failure."""
        raise NotImplementedError

    def scrub(self, text: str) -> str:
        return _scrub(text, self.secrets())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, min_severity={self.min_severity!r})"

    __str__ = __repr__


def _validate_http_url(url: str, what: str) -> str:
    try:
        parts = urlsplit(url.strip())
    except (AttributeError, ValueError):
        raise AlertConfigError(f"{what} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AlertConfigError(f"{what} must be an http(s) URL (got {mask_url(str(url))})")
    return url.strip()


class _HttpJsonDestination(AlertDestination):
    """Shared POST-JSON logic: status classification and error scrubbing."""

    ok_statuses: frozenset[int] = frozenset(range(200, 300))

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, *, min_severity: Severity = "info"):
        super().__init__(min_severity=min_severity)
        self._url = _validate_http_url(url, f"{self.kind} URL")
        self._headers = dict(headers or {})

    @property
    def name(self) -> str:
        return f"{self.kind}({mask_url(self._url)})"

    def secrets(self) -> list[str]:
        return _url_secrets(self._url) + [v for v in self._headers.values() if v]

    def payload(self, alert: Alert) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, alert: Alert, *, timeout: float) -> int | None:
        _REDACTOR.register(self.secrets())
        body = json.dumps(self.payload(alert), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Calibrate-Alerts/0.1", **self._headers}
        try:
            response = requests.post(self._url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.Timeout as exc:
            raise DeliveryError(f"timed out after {timeout:g}s", transient=True) from exc
        except requests.RequestException as exc:
            raise DeliveryError(self.scrub(f"could not connect: {type(exc).__name__}: {exc}"), transient=True) from exc
        status = response.status_code
        if status in self.ok_statuses:
            return status
        snippet = self.scrub(_truncate(response.text.strip().replace("\n", " "), 200))
        transient = status == 429 or status >= 500
        raise DeliveryError(
            f"HTTP {status}" + (f": {snippet}" if snippet else ""),
            transient=transient,
            status_code=status,
            retry_after=response.headers.get("Retry-After"),
        )


class SlackWebhookDestination(_HttpJsonDestination):
    """Slack incoming webhook: ``text`` is the notification fallback, ``blocks`` the layout."""

    kind = "slack"

    def __init__(self, url: str, *, min_severity: Severity = "info"):
        super().__init__(url, min_severity=min_severity)

    def payload(self, alert: Alert) -> dict[str, Any]:
        heading = f"[{alert.severity.upper()}] {alert.title}"
        context = f"*Source:* `{alert.source}`" + (f"   *Tenant:* `{alert.tenant}`" if alert.tenant else "")
        blocks: list[dict[str, Any]] = [
            # Slack rejects a header over 150 characters and a section over 3000.
            {"type": "header", "text": {"type": "plain_text", "text": _truncate(f"{_EMOJI[alert.severity]} {heading}", 150), "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(alert.message or "(no message)", 3000)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _truncate(context, 3000)}]},
        ]
        if alert.details:
            details = json.dumps(_jsonable(dict(alert.details)), indent=2, ensure_ascii=False, sort_keys=True)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _truncate(f"```{details}```", 3000)}})
        if alert.link:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _truncate(f"<{alert.link}|Open the full report>", 3000)}})
        return {"text": _truncate(f"{heading}: {alert.message}", 3000), "blocks": blocks}


class WebhookDestination(_HttpJsonDestination):
    """Any HTTP endpoint that accepts the alert as JSON (``Alert.to_json_dict`` plus a timestamp)."""

    kind = "webhook"

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {**alert.to_json_dict(), "sent_at": datetime.now(UTC).isoformat(), "app": "calibrate"}


class PagerDutyDestination(_HttpJsonDestination):
    """PagerDuty Events API v2 ``trigger`` events, deduplicated by the alert key."""

    kind = "pagerduty"
    ok_statuses = frozenset({200, 201, 202})

    def __init__(self, routing_key: str, events_url: str = PAGERDUTY_EVENTS_URL, *, min_severity: Severity = "error"):
        if not routing_key or not routing_key.strip():
            raise AlertConfigError("the PagerDuty routing key is empty")
        super().__init__(events_url, min_severity=min_severity)
        self._routing_key = routing_key.strip()

    def secrets(self) -> list[str]:
        return [self._routing_key]

    @property
    def name(self) -> str:
        return f"pagerduty({mask_url(self._url)}, routing_key={MASK})"

    def payload(self, alert: Alert) -> dict[str, Any]:
        summary = f"{alert.title}: {alert.message}" if alert.message else alert.title
        details = {"message": alert.message, **_jsonable(dict(alert.details))}
        if alert.tenant:
            details["tenant"] = alert.tenant
        return {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": _truncate(alert.key, 255),
            "client": "Calibrate",
            "payload": {
                "summary": _truncate(summary, 1024),
                "source": alert.source,
                "severity": alert.severity,  # the four values are PagerDuty's own
                "component": "calibr_pipeline",
                **({"group": alert.tenant} if alert.tenant else {}),
                "custom_details": details,
            },
        }


class EmailDestination(AlertDestination):
    kind = "email"

    def __init__(
        self,
        smtp_host: str,
        smtp_port: int,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        *,
        use_ssl: bool = False,
        min_severity: Severity = "info",
    ):
        super().__init__(min_severity=min_severity)
        if not smtp_host:
            raise AlertConfigError("the SMTP host is empty")
        if not 0 < int(smtp_port) < 65536:
            raise AlertConfigError(f"the SMTP port must be between 1 and 65535, got {smtp_port}")
        recipients = [r.strip() for r in recipients if r and r.strip()]
        if not sender or "@" not in sender:
            raise AlertConfigError(f"the alert e-mail sender must be an e-mail address, got {sender!r}")
        if not recipients or any("@" not in r for r in recipients):
            raise AlertConfigError(f"alert e-mail recipients must be e-mail addresses, got {recipients!r}")
        if starttls and use_ssl:
            raise AlertConfigError("choose STARTTLS or SSL for SMTP, not both")
        if password and not username:
            raise AlertConfigError("an SMTP password was given without a user name")
        self.smtp_host = smtp_host
        self.smtp_port = int(smtp_port)
        self.sender = sender
        self.recipients = recipients
        self.username = username
        self._password = password
        self.starttls = starttls
        self.use_ssl = use_ssl

    @property
    def name(self) -> str:
        auth = f", user={self.username}, password={MASK}" if self.username else ""
        return f"email(smtp://{self.smtp_host}:{self.smtp_port}, to={','.join(self.recipients)}{auth})"

    def secrets(self) -> list[str]:
        return [self._password] if self._password else []

    def build_message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        tenant = f" [{alert.tenant}]" if alert.tenant else ""
        msg["Subject"] = _truncate(f"[Calibrate][{alert.severity.upper()}]{tenant} {alert.title}", 200).replace("\n", " ")
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["X-Calibrate-Severity"] = alert.severity
        msg["X-Calibrate-Dedup-Key"] = alert.key
        lines = [alert.message, "", f"Severity: {alert.severity}", f"Source: {alert.source}"]
        if alert.tenant:
            lines.append(f"Tenant: {alert.tenant}")
        if alert.details:
            lines += ["", "Details:", json.dumps(_jsonable(dict(alert.details)), indent=2, ensure_ascii=False, sort_keys=True)]
        if alert.link:
            lines += ["", f"Full report: {alert.link}"]
        msg.set_content("\n".join(lines))
        for attachment in alert.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            msg.add_attachment(attachment.data, maintype=maintype, subtype=subtype or "octet-stream", filename=attachment.filename)
        return msg

    def send(self, alert: Alert, *, timeout: float) -> int | None:
        message = self.build_message(alert)
        try:
            if self.use_ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.smtp_host, self.smtp_port, timeout=timeout, context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=timeout)
            with smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP login refused ({exc.smtp_code})", transient=False, status_code=exc.smtp_code) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP server refused every recipient: {sorted(exc.recipients)}", transient=False) from exc
        except smtplib.SMTPResponseException as exc:
            # 4xx SMTP replies are "try again later" by definition; 5xx are final.
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise DeliveryError(
                self.scrub(f"SMTP error {exc.smtp_code}: {_truncate(text, 200)}"),
                transient=400 <= exc.smtp_code < 500,
                status_code=exc.smtp_code,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(self.scrub(f"SMTP server does not support this: {exc}"), transient=False) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(self.scrub(f"SMTP delivery failed: {type(exc).__name__}: {exc}"), transient=True) from exc
        if refused:
            # Some recipients got it; a retry would duplicate for them, so report it.
            raise DeliveryError(f"SMTP server refused some recipients: {sorted(refused)}", transient=False)
        return None


# --------------------------------------------------------------------------- dispatcher


class AlertDispatcher:
    def __init__(
        self,
        destinations: Sequence[AlertDestination],
        *,
        min_severity: Severity = "info",
        retry_policy: RetryPolicy = DEFAULT_RETRY,
        timeout: float = 10.0,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        self.destinations = list(destinations)
        for destination in self.destinations:
            _REDACTOR.register(destination.secrets())
        self.min_severity = _check_severity(min_severity, "min_severity")
        self.retry_policy = retry_policy
        self.timeout = timeout
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"AlertDispatcher({self.destinations!r}, min_severity={self.min_severity!r})"

    def dispatch(self, alert: Alert) -> list[DeliveryResult]:
        """Deliver to every destination that admits ``alert``; one result per destination tried."""
        try:
            if _RANK[alert.severity] < _RANK[self.min_severity]:
                return []
            chosen = [d for d in self.destinations if d.admits(alert)]
        except Exception as exc:  # e.g. not an Alert at all
            log.error("alert not dispatched: %s", exc)
            return [DeliveryResult("dispatcher", False, 0, f"not a valid alert: {type(exc).__name__}: {exc}")]
        if not chosen:
            return []
        if len(chosen) == 1:
            results = [self._deliver(chosen[0], alert)]
        else:
            # In parallel: a destination that times out must not delay the others.
            with ThreadPoolExecutor(max_workers=len(chosen), thread_name_prefix="alerts") as pool:
                results = list(pool.map(lambda d: self._deliver(d, alert), chosen))
        for result in results:
            if not result.ok:
                log.warning("alert %r not delivered to %s after %d attempt(s): %s", alert.title, result.destination, result.attempts, result.error)
        return results

    def _deliver(self, destination: AlertDestination, alert: Alert) -> DeliveryResult:
        attempts = 0

        def once() -> int | None:
            nonlocal attempts
            attempts += 1
            return destination.send(alert, timeout=self.timeout)

        retrying = retrying_from_policy(
            self.retry_policy,
            retry=lambda exc: isinstance(exc, DeliveryError) and exc.transient,
            sleep=self._sleep,
        )
        try:
            status = retrying(once)
        except DeliveryError as exc:
            return DeliveryResult(destination.name, False, attempts, destination.scrub(exc.message), exc.status_code)
        except Exception as exc:  # a bug in a destination must not break the caller
            return DeliveryResult(destination.name, False, attempts, destination.scrub(f"{type(exc).__name__}: {exc}"))
        return DeliveryResult(destination.name, True, attempts, None, status)

    # ----------------------------------------------------------------- configuration

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> AlertDispatcher:
        """Build from ``CALIBR_ALERT_*`` variables (see the module docstring)."""
        import os

        env = {k: v for k, v in (os.environ if environ is None else environ).items() if k.startswith("CALIBR_ALERT_")}

        def get(name: str) -> str | None:
            value = env.get(f"CALIBR_ALERT_{name}")
            return value.strip() if value and value.strip() else None

        def flag(name: str) -> bool:
            value = get(name)
            if value is None:
                return False
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise AlertConfigError(f"CALIBR_ALERT_{name} must be true or false, got {value!r}")

        destinations: list[AlertDestination] = []
        if url := get("SLACK_WEBHOOK_URL"):
            destinations.append(_config(lambda: SlackWebhookDestination(url), "CALIBR_ALERT_SLACK_WEBHOOK_URL"))
        if url := get("WEBHOOK_URL"):
            auth = get("WEBHOOK_AUTHORIZATION")
            headers = {"Authorization": auth} if auth else {}
            destinations.append(_config(lambda: WebhookDestination(url, headers), "CALIBR_ALERT_WEBHOOK_URL"))
        if host := get("SMTP_HOST"):
            starttls, use_ssl = flag("SMTP_STARTTLS"), flag("SMTP_SSL")
            port_text = get("SMTP_PORT")
            if port_text is None:
                port = 465 if use_ssl else 587 if starttls else 25
            elif port_text.isdigit():
                port = int(port_text)
            else:
                raise AlertConfigError(f"CALIBR_ALERT_SMTP_PORT must be a number, got {port_text!r}")
            sender = get("SMTP_FROM")
            recipients = [r for r in (get("SMTP_TO") or "").split(",") if r.strip()]
            if not sender or not recipients:
                raise AlertConfigError("CALIBR_ALERT_SMTP_HOST is set, so CALIBR_ALERT_SMTP_FROM and CALIBR_ALERT_SMTP_TO are required")
            destinations.append(
                _config(
                    lambda: EmailDestination(
                        host, port, sender, recipients, get("SMTP_USER"), get("SMTP_PASSWORD"), starttls, use_ssl=use_ssl
                    ),
                    "CALIBR_ALERT_SMTP_*",
                )
            )
        if key := get("PAGERDUTY_ROUTING_KEY"):
            events_url = get("PAGERDUTY_URL") or PAGERDUTY_EVENTS_URL
            pd_min = _check_severity(get("PAGERDUTY_MIN_SEVERITY") or "error", "CALIBR_ALERT_PAGERDUTY_MIN_SEVERITY")
            destinations.append(
                _config(lambda: PagerDutyDestination(key, events_url, min_severity=pd_min), "CALIBR_ALERT_PAGERDUTY_*")
            )
        min_severity = _check_severity(get("MIN_SEVERITY") or "info", "CALIBR_ALERT_MIN_SEVERITY")
        return cls(destinations, min_severity=min_severity, **kwargs)


def _config(build: Callable[[], AlertDestination], variable: str) -> AlertDestination:
    try:
        return build()
    except AlertConfigError as exc:
        raise AlertConfigError(f"{variable}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise AlertConfigError(f"{variable}: invalid value ({type(exc).__name__})") from None
