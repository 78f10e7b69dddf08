"""que web inside a Django project, behind Django's staff login::

    # urls.py
    from django.urls import include, path
    from que_core.contrib.django.web import dashboard_urls

    urlpatterns = [path("admin/que/", include(dashboard_urls()))]

Only staff users see it (``staff_member_required``: others are sent to the
admin's login page, so ``django.contrib.admin``, ``auth`` and ``sessions``
must be installed). The dashboard works on the worker's database (the
``QUE`` setting's ``DATABASE``, as ``manage.py que_work``) and keeps its own
CSRF token: its POSTs do not carry Django's. Needs que-core's web extra.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt

__all__ = ["dashboard_urls"]


def _bridge(read_only: bool, refresh: float) -> Callable[[HttpRequest, str], HttpResponse]:
    lock = threading.Lock()
    made: list[Any] = []

    def app() -> Any:
        with lock:
            if not made:
                from que_core.contrib.django import db
                from que_core.web import wsgi_app

                # Django's staff check ran before any request gets here.
                made.append(wsgi_app(db.worker_dsn(), adapter=db.worker_adapter(),
                                     authorize=lambda request: True, read_only=read_only,
                                     refresh=refresh))
            return made[0]

    def view(request: HttpRequest, rest: str) -> HttpResponse:
        body = request.body
        environ: dict[str, Any] = {k: v for k, v in request.META.items() if isinstance(v, str)}
        path_info = "/" + rest
        script_name = request.path[: len(request.path) - len(rest)].rstrip("/")
        environ.update({
            "SCRIPT_NAME": script_name,
            "PATH_INFO": path_info,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": request.scheme,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        })
        environ.setdefault("SERVER_NAME", request.get_host().split(":")[0])
        environ.setdefault("SERVER_PORT", request.get_port())
        got: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            got["status"], got["headers"] = status, headers
            return lambda data: None

        chunks = app()(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        response = HttpResponse(content, status=int(got["status"].split()[0]))
        for name, value in got["headers"]:
            if name.lower() == "set-cookie":
                cookie: SimpleCookie = SimpleCookie()
                cookie.load(value)
                for key, morsel in cookie.items():
                    response.cookies[key] = morsel
            else:
                response[name] = value
        return response

    return view


def dashboard_urls(*, read_only: bool = False, refresh: float = 3.0) -> list[URLPattern]:
    """The dashboard's URL patterns, to ``include()`` under a prefix of your choice."""
    view = staff_member_required(csrf_exempt(_bridge(read_only, refresh)))
    return [re_path(r"^(?P<rest>.*)$", view, name="que_web")]
