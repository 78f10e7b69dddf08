"""An email backend that sends each message in a que-core job.

::

    EMAIL_BACKEND = "que_core.contrib.django.mail.EmailBackend"
    QUE = {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",  # sends for real
        "EMAIL_QUEUE": "default",
        "EMAIL_PRIORITY": 100,
    }

With Django 6.1's ``MAILERS``, the job delivers through another mailer::

    MAILERS = {
        "default": {
            "BACKEND": "que_core.contrib.django.mail.EmailBackend",
            "OPTIONS": {"mailer": "smtp", "queue": "mail", "priority": 50},
        },
        "smtp": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {...}},
    }

``send_mail(...)`` (and every other way Django sends email) then inserts one
:class:`SendEmailJob` per message in the current transaction: a rolled-back
``atomic`` block sends nothing, and a failed delivery is retried by
que-core's backoff. The job rebuilds the message (subject, body, from, to,
cc, bcc, reply-to, headers, alternatives, attachments) and hands it to
``QUE["EMAIL_BACKEND"]``.
"""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.module_loading import import_string

from que_core.contrib.django import conf, db
from que_core.job import Job

_SUBTYPES = ("content_subtype", "mixed_subtype", "alternative_subtype")


def _content(value: str | bytes) -> dict[str, str]:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return {"text": value}


def _uncontent(value: dict[str, str]) -> str | bytes:
    if "base64" in value:
        return base64.b64decode(value["base64"])
    return value["text"]


def serialize(message: EmailMessage) -> dict[str, Any]:
    """*message* as JSON-ready data."""
    attachments: list[dict[str, Any]] = []
    for item in message.attachments:
        if isinstance(item, email.message.Message):  # MIMEBase / MIMEPart
            attachments.append({"mime": base64.b64encode(item.as_bytes()).decode("ascii")})
        else:
            filename, content, mimetype = item
            attachments.append({"filename": filename, "mimetype": mimetype, **_content(content)})
    data: dict[str, Any] = {
        "subject": str(message.subject),
        "body": str(message.body),
        "from_email": message.from_email,
        "to": list(message.to),
        "cc": list(message.cc),
        "bcc": list(message.bcc),
        "reply_to": list(message.reply_to),
        "headers": {str(k): str(v) for k, v in message.extra_headers.items()},
        # class attributes a subclass may override (mixed_subtype is gone in Django 6)
        "subtypes": {
            name: getattr(message, name)
            for name in _SUBTYPES
            if isinstance(getattr(message, name, None), str)
        },
        "encoding": str(message.encoding) if message.encoding else None,
        "attachments": attachments,
    }
    if isinstance(message, EmailMultiAlternatives):
        data["alternatives"] = [[str(c), mimetype] for c, mimetype in message.alternatives]
    return data


def _mime(raw: bytes) -> Any:
    """A MIME attachment back from its bytes, as the running Django accepts it."""
    import django

    if django.VERSION >= (6, 0):
        return email.message_from_bytes(raw, policy=email.policy.default)
    from email.mime.base import MIMEBase

    parsed = email.message_from_bytes(raw)
    part = MIMEBase(parsed.get_content_maintype(), parsed.get_content_subtype())
    for key in list(part.keys()):
        del part[key]
    for key, value in parsed.items():
        part[key] = value
    part.set_payload(parsed.get_payload())
    return part


def deserialize(data: dict[str, Any]) -> EmailMessage:
    """The message :func:`serialize` described."""
    kwargs: dict[str, Any] = {
        "subject": data["subject"],
        "body": data["body"],
        "from_email": data["from_email"],
        "to": data["to"],
        "cc": data["cc"],
        "bcc": data["bcc"],
        "reply_to": data["reply_to"],
        "headers": data["headers"],
    }
    message: EmailMessage
    if "alternatives" in data:
        message = EmailMultiAlternatives(
            alternatives=[tuple(a) for a in data["alternatives"]], **kwargs
        )
    else:
        message = EmailMessage(**kwargs)
    for name, value in data["subtypes"].items():
        if name in _SUBTYPES and hasattr(message, name):
            setattr(message, name, value)
    if data.get("encoding"):
        message.encoding = data["encoding"]
    for item in data["attachments"]:
        if "mime" in item:
            message.attach(_mime(base64.b64decode(item["mime"])))
        else:
            message.attach(item["filename"], _uncontent(item), item["mimetype"])
    return message


def configured() -> bool:
    """Whether Django sends email through :class:`EmailBackend`
    (``EMAIL_BACKEND``, or a ``MAILERS`` entry on Django 6.1+)."""
    from django.conf import settings

    paths = [getattr(settings, "EMAIL_BACKEND", None)]
    mailers = getattr(settings, "MAILERS", None)
    if isinstance(mailers, dict):
        paths += [m.get("BACKEND") for m in mailers.values() if isinstance(m, dict)]
    return conf.names_subclass(paths, EmailBackend)


class SendEmailJob(Job, register=False):
    """Sends one serialized message through the ``mailer`` alias of
    ``MAILERS`` (Django 6.1+) if given, else ``QUE["EMAIL_BACKEND"]``.

    Registered (workers run it) only where :func:`configured`: elsewhere a
    forged row cannot send mail through ``QUE["EMAIL_BACKEND"]``."""

    job_name = "que_core.contrib.django.mail.SendEmailJob"

    def run(self, message: dict[str, Any], mailer: str | None = None) -> None:
        if mailer is not None:
            from django.core.mail import mailers  # type: ignore[attr-defined,unused-ignore]

            backend = mailers[mailer]
        else:
            backend = import_string(conf.get("EMAIL_BACKEND"))()
        backend.send_messages([deserialize(message)])


class EmailBackend(BaseEmailBackend):
    """Enqueues a :class:`SendEmailJob` per message instead of sending it.

    Options (``MAILERS`` ``OPTIONS`` on Django 6.1+, or keyword arguments):
    ``mailer``, the alias that delivers; ``queue`` and ``priority`` of the
    jobs (default ``QUE["EMAIL_QUEUE"]`` and ``QUE["EMAIL_PRIORITY"]``).
    """

    def __init__(
        self,
        *args: Any,
        mailer: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.quiet = bool(kwargs.get("fail_silently", args[0] if args else False))
        super().__init__(*args, **kwargs)
        self.mailer = mailer
        self.queue = queue
        self.priority = priority

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        count = 0
        extra: dict[str, Any] = {} if self.mailer is None else {"mailer": self.mailer}
        for message in email_messages:
            if not message.recipients():
                continue
            try:
                SendEmailJob.enqueue(
                    serialize(message),
                    conn=db.connection(),
                    queue=self.queue or conf.get("EMAIL_QUEUE"),
                    priority=self.priority if self.priority is not None
                    else conf.get("EMAIL_PRIORITY"),
                    **extra,
                )
            except Exception:
                if not self.quiet:
                    raise
            else:
                count += 1
        return count
