"""``que web``: a dashboard to see and steer the queues (que-core's web extra).

Serve it with ``que web``, or mount it in an application:

- ASGI (Starlette, FastAPI): ``app.mount("/que", create_app(dsn, authorize=...))``;
- WSGI (Flask, ...): :func:`wsgi_app`, e.g. under werkzeug's DispatcherMiddleware.

See docs/web.md.
"""

from __future__ import annotations

from typing import Any

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "que web needs que-core's web extra: pip install 'que-core[web]'"
    ) from exc

from que_core.web.app import create_app

__all__ = ["create_app", "wsgi_app"]


def wsgi_app(dsn: str, **kwargs: Any) -> Any:
    """The dashboard as a WSGI app (through a2wsgi), for Flask and other WSGI
    hosts; takes :func:`create_app`'s arguments."""
    try:
        from a2wsgi import ASGIMiddleware
    except ImportError as exc:
        raise ImportError("que web as a WSGI app needs a2wsgi (que-core's web extra): "
                          "pip install 'que-core[web]'") from exc
    return ASGIMiddleware(create_app(dsn, **kwargs))  # type: ignore[arg-type]
