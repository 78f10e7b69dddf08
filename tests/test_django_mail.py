"""The email backend: each message is a job, sent by the job."""

from __future__ import annotations

import email.mime.text
import json

import pytest

pytest.importorskip("django")

from tests import django_support
from tests.django_support import DjangoDatabase
from tests.helpers import job_count

django_support.setup()
django_db = django_support.django_db  # the fixture

from django.core import mail  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import override_settings  # noqa: E402

from que_core.contrib.django.mail import EmailBackend, SendEmailJob  # noqa: E402
from que_core.testing import assert_enqueued, drain  # noqa: E402


def test_send_mail_enqueues_in_the_transaction(django_db: DjangoDatabase) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        mail.send_mail("rolled back", "body", None, ["a@example.com"])
        raise RuntimeError("roll back")
    assert job_count(django_db.conn) == 0
    with transaction.atomic():
        assert mail.send_mail("Hello", "body", None, ["a@example.com"]) == 1
    assert mail.outbox == []  # not sent yet: enqueued
    assert_enqueued(SendEmailJob, queue="default", priority=100, count=1)
    drain()
    [sent] = mail.outbox
    assert (sent.subject, sent.body, sent.to) == ("Hello", "body", ["a@example.com"])
    assert sent.from_email == "tests@example.com"
    assert job_count(django_db.conn) == 0


def test_every_part_of_a_message_survives_the_queue(django_db: DjangoDatabase) -> None:
    message = mail.EmailMultiAlternatives(
        subject="Ünïcode subject",
        body="plain body",
        from_email="from@example.com",
        to=["to@example.com"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["reply@example.com"],
        headers={"X-Campaign": "spring"},
    )
    message.attach_alternative("<p>html body</p>", "text/html")
    message.attach("notes.txt", "some text", "text/plain")
    message.attach("data.bin", b"\x00\x01\xff", "application/octet-stream")
    mime = email.mime.text.MIMEText("a MIME part")
    mime.add_header("Content-Disposition", "attachment", filename="part.txt")
    with pytest.warns(Warning) if _mime_is_deprecated() else _nothing():
        message.attach(mime)
    message.send()
    [job] = assert_enqueued(SendEmailJob)
    json.dumps(job.args)  # plain JSON in the job's row
    drain()
    [sent] = mail.outbox
    assert isinstance(sent, mail.EmailMultiAlternatives)
    for field in ("subject", "body", "from_email", "to", "cc", "bcc", "reply_to", "extra_headers"):
        assert getattr(sent, field) == getattr(message, field), field
    assert [tuple(a) for a in sent.alternatives] == [("<p>html body</p>", "text/html")]
    assert [tuple(a) for a in sent.attachments[:2]] == [
        ("notes.txt", "some text", "text/plain"),
        ("data.bin", b"\x00\x01\xff", "application/octet-stream"),
    ]
    part = sent.attachments[2]
    assert part.get_filename() == "part.txt"
    assert part.get_payload(decode=True) == b"a MIME part"
    rendered = sent.message().as_string()
    assert "X-Campaign: spring" in rendered and "html body" in rendered


def _mime_is_deprecated() -> bool:
    import django

    return django.VERSION >= (6, 0)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_queue_and_priority_are_settings(django_db: DjangoDatabase) -> None:
    with override_settings(QUE={"EMAIL_QUEUE": "mail", "EMAIL_PRIORITY": 5,
                                "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}):
        mail.send_mail("s", "b", None, ["a@example.com"])
    assert_enqueued(SendEmailJob, queue="mail", priority=5)
    backend = EmailBackend(queue="urgent", priority=1)
    assert backend.send_messages([mail.EmailMessage("s", "b", to=["b@example.com"])]) == 1
    assert backend.send_messages([mail.EmailMessage("no recipients", "b")]) == 0
    assert_enqueued(SendEmailJob, queue="urgent", priority=1)


def test_a_failed_delivery_is_retried(django_db: DjangoDatabase) -> None:
    mail.send_mail("s", "b", None, ["a@example.com"])
    broken = "tests.django_app.mail.BrokenEmailBackend"
    with override_settings(QUE={"EMAIL_BACKEND": broken}), pytest.raises(
        ConnectionRefusedError
    ):
        drain()
    row = django_db.conn.execute("SELECT error_count, last_error_message FROM que_jobs")[0]
    assert row == (1, "ConnectionRefusedError: SMTP server down")
    assert mail.outbox == []


def test_mailers_of_django_6_1(django_db: DjangoDatabase) -> None:
    import django

    if django.VERSION < (6, 1):
        pytest.skip("MAILERS is Django 6.1's")
    mailers = {
        "default": {
            "BACKEND": "que_core.contrib.django.mail.EmailBackend",
            "OPTIONS": {"mailer": "delivery", "queue": "mail", "priority": 7},
        },
        "delivery": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
    }
    with override_settings(MAILERS=mailers):
        mail.send_mail("via MAILERS", "b", None, ["a@example.com"])
        assert_enqueued(SendEmailJob, kwargs={"mailer": "delivery"}, queue="mail", priority=7)
        drain()
    [sent] = mail.outbox
    assert (sent.subject, sent.sent_using) == ("via MAILERS", "delivery")


def test_configured_only_where_a_setting_names_this_backend() -> None:
    from que_core.contrib.django import mail as que_mail

    ours = "que_core.contrib.django.mail.EmailBackend"
    locmem = "django.core.mail.backends.locmem.EmailBackend"
    with override_settings(EMAIL_BACKEND=ours):
        assert que_mail.configured()
    with override_settings(EMAIL_BACKEND=locmem, MAILERS={"a": {"BACKEND": "no.such.Backend"}}):
        assert not que_mail.configured()  # one that does not import is passed over
    mailers = {"a": 3, "b": {"BACKEND": "no.such.Backend"}, "c": {"BACKEND": ours}}
    with override_settings(EMAIL_BACKEND=locmem, MAILERS=mailers):
        assert que_mail.configured()
