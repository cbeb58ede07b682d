"""Security headers on every answer. Pages load scripts and styles from /static/ only (the
console's one script reads its texts from a JSON data block, which CSP does not run), so
the policy allows no inline script at all; inline style attributes stay allowed (charts
colour their legends with them; a style cannot run code). Nothing may frame a page
(clickjacking of approve and resolve buttons), nothing is sniffed, and what a signed-in
person saw is not kept by the browser's or a proxy's cache."""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
FIXED = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # aiohttp names itself and Python with their versions; a scanner needs neither.
    "Server": "coordinator",
}


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for every answer, errors and static files included."""
    for name, value in FIXED.items():
        response.headers[name] = value
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
