"""The sandbox's page at /sandbox/: what each phone and mailbox received, and a form to
reply to an SMS as the staff member holding that phone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

if TYPE_CHECKING:
    from coordinator.sandbox.twilio import TwilioSandbox

_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>沙箱：短信与邮件</title>
<style>
body{font-family:sans-serif;margin:1.5em;max-width:70em}
table{border-collapse:collapse;width:100%;margin-bottom:.5em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
.inbound{background:#eef6ff} .undelivered,.failed{color:#b00} .delivered{color:#070}
pre{white-space:pre-wrap;margin:0}
</style></head><body>
<h1>沙箱</h1>
<p>短信：{% for status, n in counts.most_common() %}{{ status }} {{ n }}{{ '，' if not loop.last }}
{%- else %}无{% endfor %}</p>
<h2>短信（按手机号）</h2>
{% for phone, messages in threads.items() %}
<section id="phone-{{ phone }}">
<h3>{{ phone }}</h3>
<table><tr><th>时间（UTC）</th><th>方向</th><th>发送方</th><th>内容</th><th>状态</th></tr>
{% for m in messages %}
<tr class="{{ m.direction }}"><td>{{ m.date_created.strftime('%Y-%m-%d %H:%M:%S') }}</td>
<td>{{ '回复' if m.direction == 'inbound' else '收到' }}</td><td>{{ m.from_ or m.messaging_service_sid }}</td>
<td><pre>{{ m.body }}</pre></td>
<td class="{{ m.status }}">{{ m.status }}{% if m.error_code %} ({{ m.error_code }}){% endif %}</td></tr>
{% endfor %}
</table>
{% set last = messages | selectattr('direction', 'ne', 'inbound') | list | last %}
{% if last and last.from_ %}
<form method="post" action="reply">
<input type="hidden" name="from" value="{{ phone }}"><input type="hidden" name="to" value="{{ last.from_ }}">
<label>以 {{ phone }} 的身份回复 {{ last.from_ }}：<input name="body" size="40" required></label>
<button type="submit">发送回复</button>
</form>
{% endif %}
</section>
{% else %}<p>还没有短信。</p>{% endfor %}
{% if mailboxes is not none %}
<h2>邮件（按收件箱）</h2>
{% for address, emails in mailboxes.items() %}
<section><h3>{{ address }}</h3>
<table><tr><th>时间（UTC）</th><th>发件人</th><th>主题</th><th>正文</th></tr>
{% for e in emails %}
<tr><td>{{ e.received_at.strftime('%Y-%m-%d %H:%M:%S') }}</td><td>{{ e.mail_from }}</td><td>{{ e.subject }}</td>
<td><pre>{{ e.text or '' }}</pre>{% if e.html %}<small>（另有 HTML 版本）</small>{% endif %}</td></tr>
{% endfor %}
</table></section>
{% else %}<p>还没有邮件。</p>{% endfor %}
{% endif %}
</body></html>
"""
)


def page_routes(sandbox: TwilioSandbox) -> list[web.RouteDef]:
    async def show(request: web.Request) -> web.Response:
        html = _TEMPLATE.render(
            counts=sandbox.counts(),
            threads=sandbox.threads(),
            mailboxes=sandbox.inbox.mailboxes() if sandbox.inbox is not None else None,
        )
        return web.Response(text=html, content_type="text/html")

    async def reply(request: web.Request) -> web.Response:
        form = await request.post()
        from_, to, body = (str(form.get(name, "")) for name in ("from", "to", "body"))
        if not body:
            raise web.HTTPBadRequest(text="body is required")
        try:
            await sandbox.reply(from_, to, body)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        raise web.HTTPSeeOther(f"/sandbox/#phone-{from_}")

    return [
        web.get("/sandbox/", show),
        web.post("/sandbox/reply", reply),
    ]
