"""que-core's exceptions. Adapters translate driver errors into these."""

from __future__ import annotations


class QueError(Exception):
    """Base class of every que-core error."""


class ConfigurationError(QueError):
    """A bad setting, or an adapter that is not installed."""


class InvalidJob(QueError, ValueError):
    """Enqueue arguments that que-core refuses; nothing was inserted."""


class SchemaError(QueError):
    """The database has no que-core schema, or one this version does not know."""


class DatabaseError(QueError):
    """An error reported by PostgreSQL or the driver.

    ``sqlstate`` is the five-character SQLSTATE code when the server sent one.
    """

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class IntegrityError(DatabaseError):
    """A constraint was violated (SQLSTATE class 23)."""


class UniqueViolation(IntegrityError):
    """SQLSTATE 23505."""


class CheckViolation(IntegrityError):
    """SQLSTATE 23514."""


class ConnectionLost(DatabaseError):
    """The session is gone: the server closed it, or the network broke."""


_BY_SQLSTATE: dict[str, type[DatabaseError]] = {
    "23505": UniqueViolation,
    "23514": CheckViolation,
    # admin_shutdown, crash_shutdown, cannot_connect_now: the session is over.
    "57P01": ConnectionLost,
    "57P02": ConnectionLost,
    "57P03": ConnectionLost,
}


def from_sqlstate(sqlstate: str | None, message: str) -> DatabaseError:
    """The core exception for a server error; adapters call this."""
    if sqlstate:
        cls = _BY_SQLSTATE.get(sqlstate)
        if cls is None:
            if sqlstate.startswith("23"):
                cls = IntegrityError
            elif sqlstate.startswith("08"):
                cls = ConnectionLost
            else:
                cls = DatabaseError
        return cls(message, sqlstate)
    return DatabaseError(message, sqlstate)


class CannotConnect(ConnectionLost):
    """A new session could not be opened (the message has passwords masked)."""


class DuplicateJob(QueError):
    """An enqueue with ``on_conflict="raise"`` found a job of the same class
    and unique key waiting or running. Nothing was inserted; ``job`` is the
    existing job (its ``id``, arguments, priority and run_at)."""

    def __init__(self, message: str, job: object) -> None:
        super().__init__(message)
        self.job = job


class ResultUnavailable(QueError):
    """There is no result to wait for: the job's row is gone (deleted when it
    finished, as jobs of classes without ``keep_result`` are; removed by
    retention; or never committed)."""

    def __init__(self, message: str, job_id: int) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailed(ResultUnavailable):
    """The job will not finish: it expired (its last attempt failed, or it was
    expired by hand) or was cancelled. ``state`` says which, ``error`` and
    ``backtrace`` are the job's last error (None when it had none)."""

    def __init__(self, message: str, job_id: int, state: str, error: str | None,
                 backtrace: str | None) -> None:
        super().__init__(message, job_id)
        self.state = state
        self.error = error
        self.backtrace = backtrace


class JobStopped(BaseException):
    """Raised inside a running job's code to stop it: it ran past its
    ``max_run_time`` (:class:`JobTimedOut`) or was cancelled
    (:class:`JobCancelled`). A BaseException, as KeyboardInterrupt is, so that
    a job's ``except Exception`` does not swallow it; a job may catch it to
    clean up, and should re-raise it."""


class JobTimedOut(JobStopped):
    """The job ran past its ``max_run_time``; the attempt counts as an error."""


class JobCancelled(JobStopped):
    """The job was cancelled (``que jobs cancel``, ``que_core.cancel``)."""
