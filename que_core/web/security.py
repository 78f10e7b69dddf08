"""Who may see the dashboard, and what a page may do in the browser.

- HTTP basic auth with one password (any user name), or the host
  application's own check (*authorize*); with neither, only clients on this
  machine (loopback addresses) are answered.
- CSRF: a random token in a cookie (SameSite=Strict) that every form posts
  back; a POST whose token does not match the cookie's is refused (403), as
  is one whose Origin is another site's.
- Every response forbids scripts, styles and frames from anywhere else
  (Content-Security-Policy), so even markup that slipped through escaping
  could run nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

CSRF_COOKIE = "que_web_csrf"
CSRF_FIELD = "csrf_token"

#: Returns whether the request may use the dashboard (the host app's login).
Authorize = Callable[[Request], "bool | Awaitable[bool]"]

HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def password_matches(header: str | None, password: str) -> bool:
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _, sep, given = decoded.partition(":")
    return bool(sep) and hmac.compare_digest(given.encode(), password.encode())


class Guard:
    """ASGI middleware: authentication and the response headers above."""

    def __init__(self, app: ASGIApp, password: str | None, authorize: Authorize | None) -> None:
        self.app = app
        self.password = password
        self.authorize = authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = await self._refusal(Request(scope))
        if refusal is not None:
            await self._with_headers(refusal)(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _with_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _refusal(self, request: Request) -> Response | None:
        if self.password is not None and not password_matches(
            request.headers.get("authorization"), self.password
        ):
            return PlainTextResponse(
                "que web: this dashboard needs its password", 401,
                headers={"www-authenticate": 'Basic realm="que web", charset="UTF-8"'},
            )
        if self.authorize is not None:
            allowed = self.authorize(request)
            if not isinstance(allowed, bool):
                allowed = await allowed
            if not allowed:
                return PlainTextResponse("que web: not allowed", 403)
        if self.password is None and self.authorize is None and not _loopback(
            request.client.host if request.client else None
        ):
            return PlainTextResponse(
                "que web: no password is set, so only this machine may use the dashboard", 403
            )
        return None


def csrf_token(request: Request) -> str:
    """This browser's token (a new one when it has none; see :func:`set_csrf_cookie`)."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) < 32:
        token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def set_csrf_cookie(request: Request, response: Response) -> None:
    token = getattr(request.state, "new_csrf", None)
    if token:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https",
                            path=request.scope.get("root_path") or "/")


def csrf_refusal(request: Request, form: Any) -> str | None:
    """Why a POST with *form* is refused, or None."""
    origin = request.headers.get("origin")
    # The host only: behind a proxy that ends TLS the scheme seen here differs.
    if origin and urlsplit(origin).netloc != request.url.netloc:
        return "this form was posted from another site"
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    given = form.get(CSRF_FIELD) if form is not None else None
    if not cookie or not isinstance(given, str) or not hmac.compare_digest(
        cookie.encode(), given.encode()
    ):
        return "the form's CSRF token is missing or stale: reload the page and try again"
    return None
