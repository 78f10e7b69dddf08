"""Hostile input, property-based (hypothesis): arbitrary JSON arguments,
NUL and lone surrogates, names made of quotes, SQL and unicode, job rows
naming classes the worker never registered (or dangerous callables),
malformed rows and NOTIFY payloads, and error messages of megabytes."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
import time
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conformance.fixtures import scalar, wait_until
from que_core import Job, validation
from que_core.claims import Claims
from que_core.connection import Adapter, Connection, Notification
from que_core.errors import InvalidJob
from que_core.job import insert_many
from que_core.listener import parse
from tests.reliability import harness
from tests.reliability.harness import Elapsed, scaled
from tests.reliability.rjobs import ECHOED, Echo

T = TypeVar("T")

EXAMPLES = scaled(30, 300)
#: The time a case of hypothesis examples on a database gets.
EXAMPLES_TIMEOUT = pytest.mark.timeout(scaled(120, 1200))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
    database=None,
)


def slow_examples(test: T) -> T:
    """Marks a slow case of hypothesis examples on a database."""
    return pytest.mark.slow(EXAMPLES_TIMEOUT(test))


# -- strategies ---------------------------------------------------------------------

NO_NUL = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
TEXT = st.text(NO_NUL, max_size=40)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=25,
)
RESERVED = {"conn", "priority", "queue", "run_at", "tags"}  # enqueue's own keywords
KWARGS = st.dictionaries(TEXT.filter(lambda k: k not in RESERVED), JSON, max_size=4)

TOKENS = [
    "'", '"', "\\", ";", "%", "_", "$", "`", "(", ")", "[", "]", "{", "}", ",", ".", ":",
    "*", "?", "!", "-", "+", "=", "/", "<", ">", "|", " ", "\t", "\n", "\r", "--", "/*", "*/",
    "%s", "%%", "$1", "?", "::text", "DROP TABLE que_jobs", "'; DELETE FROM que_jobs; --",
    "\" OR 1=1 --", "pg_sleep(10)", "que_listener_", "\\u0000", "é", "ß", "中文", "😀",
    "\u202e", "\u2028", "\u200b", "\x7f", "\x01", "\ufeff", "Ω", "ǅ", "ﬃ",
]
HOSTILE = (
    st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map("".join)
    | st.text(NO_NUL, min_size=1, max_size=30)
)


def claimed(conn: Connection, queue: str) -> list[int]:
    """The jobs of *queue* a worker's claim takes (locks released after)."""
    claims = Claims(conn, [queue])
    try:
        return [r[0] for r in claims.next(None, 100)]
    finally:
        claims.flush()


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same JSON type all the way down (1 is not 1.0 or
    True). -0.0 equals 0.0: JSON numbers in jsonb have no negative zero."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and a == b
    if isinstance(a, int) or isinstance(b, int):
        return type(a) is type(b) and a == b
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def wait_echo(job_id: int, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while job_id not in ECHOED:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} was not run within {timeout}s")
        time.sleep(0.005)
    return ECHOED.pop(job_id)


def count_jobs(conn: Connection) -> int:
    return int(scalar(conn, "SELECT count(*) FROM que_jobs"))


# -- arbitrary JSON arguments ----------------------------------------------------------


@slow_examples
def test_arbitrary_json_args_round_trip_through_enqueue_and_run(
    adapter: Adapter, rel: Connection, workers: Any, elapsed: Elapsed
) -> None:
    """Arguments and keyword arguments of any JSON, enqueued alone or by COPY
    (insert_many), reach run() equal and of the same JSON types."""
    workers(worker_count=2)
    n = {"examples": 0, "jobs": 0}

    @SETTINGS
    @given(args=st.lists(JSON, max_size=4), kwargs=KWARGS, bulk=st.booleans())
    def check(args: list[Any], kwargs: dict[str, Any], bulk: bool) -> None:
        if bulk:
            job = Echo.build(args, kwargs)
            insert_many([job], rel.raw)
        else:
            job = Echo.enqueue(*args, conn=rel.raw, **kwargs)
        assert job.id is not None
        got = wait_echo(job.id)
        n["examples"] += 1
        n["jobs"] += 1
        assert same(got["args"], args), (got["args"], args)
        assert same(got["kwargs"], kwargs), (got["kwargs"], kwargs)

    check()
    # The last jobs ran (echoed); their rows go with the locker's next batch delete.
    with contextlib.suppress(AssertionError):
        wait_until(lambda: count_jobs(rel) == 0, within=10)
    lost = count_jobs(rel)
    harness.record("arbitrary JSON args and kwargs round-trip", adapter.name,
                   {"jobs": n["jobs"], "lost": lost, "violations": 0},
                   injected=n["examples"], seconds=elapsed())
    assert lost == 0


@pytest.mark.parametrize("value", [
    1e16, -1e16, 1.7976931348623157e308, 5e-324, 2.5e-300, 1e300, 123456789012345678.0,
    [1.0, 1, True, 0.1, 1e22], {"x": 9007199254740993.0}, 2**70, -(2**63),
])
@pytest.mark.per_adapter
def test_float_and_int_edge_cases_round_trip(conn: Connection, value: Any) -> None:
    """What jsonb does to numbers: it keeps the digits, not the type, so a
    float written as 1e+16 must still come back a float of the same value."""
    text = conn.execute("SELECT %s::jsonb::text", (validation.dumps([value]),))[0][0]
    assert same(json.loads(text)[0], value), (value, text)
    bulk = conn.execute(
        "SELECT (r.args)::text FROM jsonb_to_recordset(%s::jsonb) AS r(args jsonb)",
        (validation.dumps([{"args": [value]}]),),
    )[0][0]
    assert same(json.loads(bulk)[0], value), (value, bulk)


# -- NUL and lone surrogates are refused at enqueue ------------------------------------------


def _inject(text: str, pos: int, bad: str) -> str:
    pos = min(pos, len(text))
    return text[:pos] + bad + text[pos:]


@EXAMPLES_TIMEOUT
def test_nul_and_lone_surrogates_raise_a_clear_error_at_enqueue(
    adapter: Adapter, rel: Connection, elapsed: Elapsed
) -> None:
    n = {"examples": 0}

    @SETTINGS
    @given(
        base=TEXT, pos=st.integers(0, 40),
        bad=st.sampled_from(["\x00"]) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        where=st.sampled_from(["arg", "nested", "kwarg", "kwarg_name", "key", "queue", "tag",
                               "job_name"]),
    )
    def check(base: str, pos: int, bad: str, where: str) -> None:
        s = _inject(base, pos, bad)
        before = count_jobs(rel)
        with pytest.raises(InvalidJob) as info:
            if where == "arg":
                Echo.enqueue(s, conn=rel.raw)
            elif where == "nested":
                Echo.enqueue({"a": [1, {"b": s}]}, conn=rel.raw)
            elif where == "kwarg":
                Echo.enqueue(conn=rel.raw, value=s)
            elif where == "kwarg_name":
                Echo.enqueue(conn=rel.raw, **{s: 1})
            elif where == "key":
                Echo.enqueue({s: 1}, conn=rel.raw)
            elif where == "queue":
                Echo.enqueue(conn=rel.raw, queue=s[:100])
            elif where == "tag":
                Echo.enqueue(conn=rel.raw, tags=[s[:40]])
            else:
                type("BadName", (Job,), {"job_name": s[:200], "__module__": __name__})
        message = str(info.value)
        assert ("NUL" in message) if bad == "\x00" else ("surrogate" in message), message
        assert count_jobs(rel) == before
        n["examples"] += 1

    check()
    harness.record("NUL / lone surrogate refused at enqueue", adapter.name,
                   {"jobs": 0, "violations": 0}, injected=n["examples"],
                   seconds=elapsed())


# -- names made of quotes, SQL and unicode -------------------------------------------------


def _listen(adapter: Adapter, dsn: str) -> tuple[Connection, int]:
    conn = adapter.connect(dsn)
    ((pid,),) = conn.execute("SELECT pg_backend_pid()")
    conn.execute(f'LISTEN "que_listener_{int(pid)}"')
    return conn, int(pid)


def _next_notification(conn: Connection, timeout: float = 5) -> Notification:
    deadline = time.monotonic() + timeout
    while True:
        got = conn.notifications(0.2)
        if got:
            return got[0]
        if time.monotonic() > deadline:
            raise AssertionError("no notification")
        time.sleep(0.01)


@slow_examples
def test_hostile_names_are_stored_and_matched_exactly(
    adapter: Adapter, dsn: str, rel: Connection, elapsed: Elapsed
) -> None:
    """Job class names, queue names and tags of quotes, SQL and unicode:
    stored as given, matched by the lock query and the NOTIFY trigger
    exactly (never by a near miss), never executed."""
    listen, pid = _listen(adapter, dsn)
    n = {"examples": 0}

    def run(self: Job, *args: Any) -> None:
        self.destroy()

    try:
        @SETTINGS
        @given(name=HOSTILE.map(lambda s: s[:200]), queue=HOSTILE.map(lambda s: s[:100]),
               tags=st.lists(HOSTILE.map(lambda s: s[:30]), max_size=5),
               priority=st.integers(-32768, 32767))
        def check(name: str, queue: str, tags: list[str], priority: int) -> None:
            assume(all(len(json.dumps(t, ensure_ascii=False)) <= 100 for t in tags))
            cls = type("HostileNamed", (Job,), {"job_name": name, "run": run,
                                                "__module__": __name__})
            rel.execute("DELETE FROM que_lockers")
            rel.execute(
                "INSERT INTO que_lockers (pid, worker_count, worker_priorities, ruby_pid, "
                "ruby_hostname, queues, listening, job_schema_version) "
                "VALUES (%s, 1, ARRAY[1], 1, 'test', ARRAY[%s::text], true, 2)", (pid, queue))
            job = cls.enqueue(conn=rel.raw, queue=queue, tags=tags, priority=priority)
            try:
                row = rel.execute("SELECT job_class, queue, data::text FROM que_jobs "
                                  "WHERE id = %s", (job.id,))
                assert row[0][0] == name and row[0][1] == queue
                assert json.loads(row[0][2]).get("tags", []) == tags
                # the NOTIFY trigger names the queue exactly
                note = _next_notification(listen)
                assert parse(note) == (queue, priority)
                # the lock query matches the exact name only
                got = claimed(rel, queue)
                assert job.id in got
                misses = {queue + " ", " " + queue, queue.upper(), queue.lower(), queue[:-1],
                          queue + "%", "%", "_" * len(queue), queue + "\x01"} - {queue}
                for other in misses:
                    assert job.id not in claimed(rel, other), other
                # the admin filters match it exactly too
                assert scalar(rel, "SELECT count(*) FROM que_jobs WHERE job_class = %s",
                                      name) == 1
            finally:
                rel.execute("DELETE FROM que_jobs WHERE id = %s", (job.id,))
            n["examples"] += 1

        check()
        for table in ("que_jobs", "que_lockers", "que_values"):
            assert scalar(rel, "SELECT to_regclass(%s) IS NOT NULL", table)
    finally:
        listen.close()
        rel.execute("DELETE FROM que_lockers")
    harness.record("hostile class, queue and tag names", adapter.name,
                   {"jobs": n["examples"], "lost": 0, "violations": 0}, injected=n["examples"],
                   seconds=elapsed())


NASTY_QUEUES = [
    "it's", 'say "hi"', "back\\slash", "'; DROP TABLE que_jobs; --", "%", "_", "a%b",
    "中文队列", "😀 emoji", "tab\there", "new\nline", "$1", "%s",
]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_nasty_queue_names_are_worked_by_a_real_worker(
    adapter: Adapter, rel: Connection, workers: Any
) -> None:
    ids = {}
    for queue in NASTY_QUEUES:
        ids[queue] = Echo.enqueue(queue, conn=rel.raw, queue=queue, tags=[queue]).id
    near = Echo.enqueue("near miss", conn=rel.raw, queue="a%bc").id  # LIKE would match "a%b"
    w = workers(queues=NASTY_QUEUES, worker_count=2)
    for queue, job_id in ids.items():
        got = wait_echo(job_id)  # type: ignore[arg-type]
        assert got["queue"] == queue and got["args"] == [queue] and got["tags"] == [queue]
    # NOTIFY works for them too: jobs enqueued now are worked at once
    wait_listening = wait_until(
        lambda: scalar(rel, "SELECT bool_and(listening) FROM que_lockers"), within=10)
    assert wait_listening
    for queue in NASTY_QUEUES:
        job = Echo.enqueue(queue, conn=rel.raw, queue=queue)
        assert wait_echo(job.id, timeout=5)["queue"] == queue  # type: ignore[arg-type]
    time.sleep(0.5)
    assert scalar(rel, "SELECT count(*) FROM que_jobs WHERE id = %s", near) == 1
    assert w.running
    harness.record("hostile queue names, real worker", adapter.name,
                   {"jobs": 2 * len(NASTY_QUEUES) + 1, "lost": 0, "violations": 0},
                   injected=len(NASTY_QUEUES))


# -- rows naming classes the worker never registered ---------------------------------


DANGEROUS = [
    "os.system", "posix.system", "subprocess.call", "subprocess.Popen", "builtins.eval",
    "builtins.exec", "builtins.__import__", "importlib.import_module", "shutil.rmtree",
    "pickle.loads", "tests.reliability.canary.Boom", "tests.reliability.canary",
    "rel.Effect.run", "rel.Effect.__class__", "que_core.job.Job", "que_core.job.Job.__subclasses__",
    "", " rel.Echo", "rel.Echo ", "REL.ECHO", "rel.Echo\n", "__import__('os').system('id')",
]

MALFORMED = [  # (args, kwargs) as SQL text; every one must error, not crash a worker
    ("'[]'", "'5'"),
    ("'[]'", "'\"text\"'"),
    ("'[]'", "'[1, 2]'"),
    ("'[]'", "'null'"),
    ("(repeat('[', 1100) || repeat(']', 1100))::jsonb", "'{}'"),  # deeper than Python's json
    ("('[' || repeat('9', 5000) || ']')::jsonb", "'{}'"),  # more digits than int() allows
]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_unregistered_and_dangerous_class_names_are_never_imported_or_called(
    adapter: Adapter, rel: Connection, workers: Any, elapsed: Elapsed
) -> None:
    marker = os.path.join(tempfile.gettempdir(), f"que-rel-pwned-{os.getpid()}")
    if os.path.exists(marker):
        os.unlink(marker)
    payload = json.dumps([f"touch {marker}", f"touch {marker}"])
    for error_count in (0, 15):  # 15: the next error expires the job (maximum_retry_count)
        for name in DANGEROUS:
            rel.execute(
                "INSERT INTO que_jobs (job_class, args, kwargs, error_count, job_schema_version) "
                "VALUES (%s, %s::jsonb, %s::jsonb, %s, 2)",
                (name, payload, json.dumps({"shell": True}), error_count))
        for args, kwargs in MALFORMED:
            rel.execute(
                f"INSERT INTO que_jobs (job_class, args, kwargs, error_count, job_schema_version) "
                f"VALUES ('rel.Echo', {args}, {kwargs}, %s, 2)", (error_count,))
    from que_core.job import registry

    rng = random.Random()
    extra = 0
    for _ in range(scaled(20, 200)):  # random names of tokens and unicode
        name = "".join(rng.choice([*TOKENS, chr(rng.randrange(1, 55295))])
                       for _ in range(rng.randrange(1, 12)))[:200]
        if name in registry:
            continue
        rel.execute("INSERT INTO que_jobs (job_class, args, job_schema_version) "
                    "VALUES (%s, %s::jsonb, 2)", (name, payload))
        extra += 1
    total = 2 * (len(DANGEROUS) + len(MALFORMED)) + extra
    w = workers(worker_count=3)
    after = Echo.enqueue("after", conn=rel.raw, priority=200)
    try:
        wait_until(lambda: scalar(
            rel, "SELECT count(*) FROM que_jobs WHERE error_count = 0 AND id <> %s",
            after.id) == 0, within=30, what="every hostile row errored")
        wait_until(lambda: scalar(
            rel, "SELECT count(*) FROM que_jobs WHERE error_count >= 16 "
            "AND expired_at IS NOT NULL") == len(DANGEROUS) + len(MALFORMED),
            within=30, what="the rows out of retries expired")
        assert wait_echo(after.id)["args"] == ["after"]  # type: ignore[arg-type]
    finally:
        rows = rel.execute("SELECT job_class, kwargs::text, error_count, last_error_message "
                           "FROM que_jobs ORDER BY id")
    assert w.running
    assert not os.path.exists(marker), "a job row ran a shell command"
    assert "tests.reliability.canary" not in sys.modules, "a job row made a worker import a module"
    unknown = [r for r in rows if r[0] != "rel.Echo"]
    assert all("unknown job class" in (r[3] or "") for r in unknown), unknown[:3]
    assert len(rows) == total  # nothing deleted, nothing lost
    # retried, not run in a hot loop: at most one more run after the first error
    assert all(r[2] in (1, 2, 16) for r in rows), [r for r in rows if r[2] not in (1, 2, 16)]
    assert w.stop(timeout=10) is True
    harness.record("unregistered / dangerous class names, malformed rows", adapter.name,
                   {"jobs": total, "lost": 0, "violations": 0,
                    "leaked_locks": harness.leaked_locks(rel)},
                   injected=total, seconds=elapsed())


# -- malformed NOTIFY payloads --------------------------------------------------------


PAYLOADS = (
    st.text(NO_NUL, max_size=300)
    | st.builds(json.dumps, JSON)
    | st.builds(
        lambda q_, p_, extra: json.dumps({"message_type": "job_available", "queue": q_,
                                          "priority": p_, **extra}),
        st.one_of(TEXT, st.integers(), st.none(), st.lists(st.integers(), max_size=3),
                  st.just("default")),
        st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.floats(),
                  st.booleans(), TEXT, st.none()),
        st.dictionaries(TEXT, SCALARS, max_size=3),
    )
    | st.integers(1, 3900).map(lambda n: "[" * n + "]" * n)
    | st.integers(1, 1300).map(lambda n: '{"a":' * n + "1" + "}" * n)
    | st.integers(1, 7990).map(lambda n: "x" * n)
)


def test_parse_never_raises() -> None:
    n = {"examples": 0}

    @settings(max_examples=scaled(300, 3000), deadline=None, database=None)
    @given(payload=PAYLOADS)
    def check(payload: str) -> None:
        found = parse(Notification("que_listener_1", payload))
        assert found is None or (isinstance(found[0], str) and isinstance(found[1], int))
        n["examples"] += 1

    check()
    harness.record("NOTIFY payload parser (no database)", "-", {"violations": 0},
                   injected=n["examples"])


@slow_examples
def test_malformed_notify_payloads_are_ignored(
    adapter: Adapter, rel: Connection, workers: Any, elapsed: Elapsed
) -> None:
    w = workers(poll_interval=60, worker_count=2)  # only NOTIFY brings a job quickly
    pid = wait_until(
        lambda: scalar(rel, "SELECT pid FROM que_lockers WHERE listening"), within=15)
    channel = f"que_listener_{pid}"
    n = {"examples": 0, "jobs": 0}
    for payload in ["[" * 3900 + "]" * 3900, '{"a":' * 1300 + "1" + "}" * 1300, "", "null",
                    '{"message_type":"job_available","queue":"default","priority":1e400}',
                    '{"message_type":"job_available","queue":"default","priority":' + "9" * 5000
                    + "}"]:
        rel.execute("SELECT pg_notify(%s, %s)", (channel, payload))
        n["examples"] += 1

    @SETTINGS
    @given(payloads=st.lists(PAYLOADS, min_size=1, max_size=5))
    def check(payloads: list[str]) -> None:
        for payload in payloads:
            if len(payload.encode()) < 7999:
                rel.execute("SELECT pg_notify(%s, %s)", (channel, payload))
                n["examples"] += 1
        job = Echo.enqueue("still here", conn=rel.raw)
        wait_echo(job.id, timeout=10)  # type: ignore[arg-type]
        n["jobs"] += 1

    check()
    assert w.running and w.listener is not None and w.listener.is_alive()
    assert scalar(rel, "SELECT bool_and(listening) FROM que_lockers")
    assert w.stop(timeout=10) is True
    harness.record("malformed NOTIFY payloads", adapter.name,
                   {"jobs": n["jobs"], "lost": count_jobs(rel), "violations": 0},
                   injected=n["examples"], seconds=elapsed())


# -- error messages and backtraces of megabytes -----------------------------------------


ERRORS: dict[str, BaseException] = {}


class Raiser(Job):
    job_name = "rel.Raiser"
    maximum_retry_count = 0  # expire on the first error

    def run(self, key: str) -> None:
        exc = ERRORS.pop(key)
        if isinstance(exc, RecursionError):
            def down(n: int) -> int:
                return down(n + 1) + 1

            down(0)
        raise exc


ANY_CHAR = st.characters(codec=None, categories=None)  # NUL and lone surrogates included


@slow_examples
def test_huge_error_messages_and_backtraces_are_truncated_not_rejected(
    adapter: Adapter, rel: Connection, workers: Any, elapsed: Elapsed
) -> None:
    workers(worker_count=2)
    n = {"examples": 0, "largest": 0}

    @settings(SETTINGS, max_examples=scaled(12, 100))
    @given(unit=st.text(ANY_CHAR, min_size=1, max_size=50),
           size=st.sampled_from([1, 499, 501, 10_001, 1_000_000, scaled(3_000_000, 8_000_000)]),
           kind=st.sampled_from(["message", "notes", "chained", "recursion"]))
    def check(unit: str, size: int, kind: str) -> None:
        text = (unit * (size // len(unit) + 1))[:size]
        if kind == "message":
            exc: BaseException = RuntimeError(text)
        elif kind == "notes":
            exc = RuntimeError("with notes")
            exc.add_note(text)
        elif kind == "chained":
            exc = RuntimeError(text)
            exc.__cause__ = ValueError(text)
        else:
            exc = RecursionError()
        key = f"{n['examples']}-{time.monotonic()}"
        ERRORS[key] = exc
        job = Raiser.enqueue(key, conn=rel.raw)
        row = wait_until(lambda: rel.execute(
            "SELECT error_count, expired_at IS NOT NULL, last_error_message, "
            "last_error_backtrace FROM que_jobs WHERE id = %s AND error_count > 0",
            (job.id,)), within=30, interval=0.01, what="the error recorded")
        error_count, expired, message, backtrace = row[0]
        assert error_count == 1 and expired
        assert 0 < len(message) <= 500 and 0 < len(backtrace) <= 10000
        prefix = "RecursionError" if kind == "recursion" else "RuntimeError"
        assert message.startswith(prefix)
        if kind == "message" and "\x00" not in text and not any(
                0xD800 <= ord(c) <= 0xDFFF for c in text):
            assert message == f"RuntimeError: {text}"[:500]
        rel.execute("DELETE FROM que_jobs WHERE id = %s", (job.id,))
        n["examples"] += 1
        n["largest"] = max(n["largest"], size)

    check()
    harness.record("error messages and backtraces of megabytes", adapter.name,
                   {"jobs": n["examples"], "lost": 0, "violations": 0},
                   injected=n["examples"], largest_bytes=n["largest"],
                   seconds=elapsed())
