"""The operator console at ``/console``: dashboard, search ("why was this blocked?"), campaigns, review queue
with keyboard labelling, blocks and appeals, reports. Plain server-rendered HTML with SVG charts and one
small script; login with roles (operator, reviewer, auditor read-only) and a session cookie.

Write requests need a session whose role allows them, and (against cross-site forgery) a same-site cookie
plus, when the browser sends one, an ``Origin`` matching the host.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html import escape
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from skyshield.api.disposal import blocks_changed, get_disposal
from skyshield.api.errors import json_response
from skyshield.console.auth import AuthError, User, Users
from skyshield.console.charts import hbars, stacked_bars
from skyshield.disposal.blocks import KINDS, BlockError
from skyshield.disposal.held import describe as describe_held
from skyshield.disposal.held import status_of as held_status_of
from skyshield.disposal.review import LABELS, ReviewError
from skyshield.disposal.schema import iso
from skyshield.events import Category, Channel

router = APIRouter(prefix="/console", include_in_schema=False)
COOKIE = "skyshield_console"
_STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}


class Denied(Exception):
    pass


# -------------------------------------------------------------------------------------- plumbing


def _users(request: Request) -> Users:
    return Users(get_disposal(request).db)


def _user(request: Request) -> User | None:
    return _users(request).session(request.cookies.get(COOKIE))


def _page(title: str, body: str, user: User | None, status: int = 200) -> HTMLResponse:
    nav = ""
    if user:
        nav = ('<a href="/console/">Dashboard 概览</a><a href="/console/search">Search 查询</a>'
               '<a href="/console/campaigns">Campaigns 活动</a><a href="/console/review">Review 审核</a>'
               '<a href="/console/blocks">Blocks 封禁</a><a href="/console/reports">Reports 举报</a>'
               '<a href="/console/regulator">Regulator 监管报表</a>'
               f'<span class="who">{escape(user.name)} ({escape(user.role)}) · '
               '<form class="inline" method="post" action="/console/logout"><button class="secondary">'
               'Log out</button></form></span>')
    html = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)} · skyshield'
            f'</title><link rel="stylesheet" href="/console/static/console.css"></head><body><header>'
            f'<strong>skyshield</strong>{nav}</header><main><h1>{escape(title)}</h1>{body}</main>'
            f'<script src="/console/static/console.js"></script></body></html>')
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store",
                                                          "X-Frame-Options": "DENY",
                                                          "Content-Security-Policy": "default-src 'self'"})


def _login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/console/login?next={quote(request.url.path)}", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        raise Denied("cross-site request refused")
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _table(headers: list[str], rows: list[list[str]], *, empty: str = "nothing yet", attrs: str = "") -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _notice(error: str, done: str) -> str:
    bad = f'<p class="error">{escape(error)}</p>' if error else ""
    return bad + (f'<p class="ok">{escape(done)}</p>' if done else "")


def _action(action: str | None) -> str:
    return f'<span class="action-{escape(action or "")}">{escape(action or "—")}</span>'


def _denied(user: User, what: str) -> HTMLResponse:
    return _page("Not allowed 无权限", f'<p class="error">Your role ({escape(user.role)}) may not {escape(what)}. '
                 f'Auditors can read everything but change nothing.</p>', user, 403)


# -------------------------------------------------------------------------------------- login


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in _STATIC:
        return Response("not found", status_code=404)
    data = resources.files("skyshield.console").joinpath("static", name).read_bytes()
    return Response(data, media_type=_STATIC[name], headers={"Cache-Control": "max-age=300"})


@router.get("/login")
async def login_page(request: Request, next: str = "/console/", error: str = "") -> HTMLResponse:
    msg = f'<p class="error">{escape(error)}</p>' if error else ""
    body = (f'{msg}<form method="post" action="/console/login" class="panel" style="max-width:22em">'
            f'<input type="hidden" name="next" value="{escape(next)}">'
            '<p><label>User 用户名<br><input name="name" autocomplete="username" required autofocus></label></p>'
            '<p><label>Password 密码<br><input name="password" type="password" autocomplete="current-password" '
            'required></label></p><p><button>Log in 登录</button></p></form>')
    return _page("Log in 登录", body, None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    target = form.get("next", "/console/")
    if not target.startswith("/console"):
        target = "/console/"  # never redirect off-site
    try:
        token = await run_in_threadpool(_users(request).login, form.get("name", ""), form.get("password", ""))
    except AuthError as exc:
        return RedirectResponse(f"/console/login?next={quote(target)}&error={quote(str(exc))}", status_code=303)
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/console",
                    secure=request.url.scheme == "https", max_age=12 * 3600)
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    _users(request).logout(request.cookies.get(COOKIE))
    resp = RedirectResponse("/console/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/console")
    return resp


# ---------------------------------------------------------------------------------- dashboard


def _dashboard(request: Request) -> str:
    disposal = get_disposal(request)
    disposal.refresh()
    db = disposal.db
    latest = db.one("SELECT MAX(msg_time) AS t FROM verdicts")["t"]
    if latest:
        # msg_time is ISO 8601 text in SQLite and a timestamp in PostgreSQL
        end = latest if isinstance(latest, datetime) else datetime.fromisoformat(latest)
        start = end - timedelta(hours=24)
        hour = "substr(msg_time, 1, 13)" if db.sqlite else "to_char(msg_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"
        rows = db.rows(f"SELECT {hour} AS hour, category, COUNT(*) AS n FROM verdicts"
                       " WHERE msg_time > ? GROUP BY hour, category ORDER BY hour", (iso(start),))
        by_action = db.rows("SELECT action, COUNT(*) AS n FROM verdicts WHERE msg_time > ? GROUP BY action",
                            (iso(start),))
    else:
        rows, by_action, end = [], [], None
    hours = sorted({r["hour"] for r in rows})
    cats = [c.value for c in Category]
    series = {c: [0] * len(hours) for c in cats}
    for r in rows:
        series.setdefault(r["category"], [0] * len(hours))[hours.index(r["hour"])] = r["n"]
    series = {k: v for k, v in series.items() if any(v)}
    actions = {r["action"]: r["n"] for r in by_action}
    total = sum(actions.values())
    cards = "".join(f'<div class="card"><div class="n">{actions.get(a, 0)}</div>{a}</div>'
                    for a in ("deliver", "tag", "fold", "hold", "block"))
    review_open = disposal.review.counts().get("open", 0)
    cards += (f'<div class="card"><div class="n">{review_open}</div><a href="/console/review">to review</a></div>'
              f'<div class="card"><div class="n">{len(disposal.reports.list(limit=1000))}</div>reports</div>')
    campaigns = disposal.campaigns.top(min_size=2, limit=8)
    camp_chart = hbars([(f"#{c['id']} {c['template'][:24]}", c["size"], f"/console/campaigns/{c['id']}")
                        for c in campaigns], title="Top campaigns by messages", colour="#f28e2b")
    senders = disposal.reports.top_senders(limit=8)
    sender_chart = hbars([(s["sender_masked"], s["reports"], f"/console/search?q={quote(s['sender'])}")
                          for s in senders], title="Top reported senders")
    window = f"24 hours to {escape(end.isoformat(timespec='minutes'))}" if end else "no traffic yet"
    return (f'<div class="cards">{cards}</div>'
            f'<div class="panel"><h2>Traffic by category 按类别流量 ({total} messages, {window})</h2>'
            f'{stacked_bars(hours, series, title="Traffic by category per hour")}</div>'
            f'<div class="panel"><h2>Top campaigns 主要活动</h2>{camp_chart}</div>'
            f'<div class="panel"><h2>Top reported senders 被举报最多的号码</h2>{sender_chart}</div>')


@router.get("/")
async def dashboard(request: Request) -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    return _page("Dashboard 概览", await run_in_threadpool(_dashboard, request), user)


# ------------------------------------------------------------------------------------- search


def _content(stored: Any) -> str:
    """What a verdict was about, as one line: the text, or for a screened call who called whom."""
    if stored.channel is Channel.CALL:
        return f"call 电话 {stored.sender[:14] or '-'} → {stored.recipient[:14] or '-'}"
    return stored.text if stored.text is not None else "(text removed by retention)"


def _verdict_rows(items: list[Any]) -> list[list[str]]:
    return [[f'<a href="/console/verdicts/{s.id}">#{s.id}</a>', escape(s.time.isoformat(timespec="seconds")),
             _action(s.verdict.action.value), escape(s.verdict.category.value), f"{s.verdict.score:.1f}",
             escape(_content(s)[:80])] for s in items]


@router.get("/search")
async def search(request: Request, q: str = "") -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    disposal = get_disposal(request)
    store = disposal.db.store
    q = q.strip()
    found: list[Any] = []
    if q.startswith("#") and q[1:].isdigit() or q.isdigit() and len(q) < 9:
        one = store.get(int(q.lstrip("#")))
        found = [one] if one else []
    elif q.startswith("h:") or (q and sum(c.isdigit() for c in q) >= 5 and len(q) <= 24):
        found = store.search(sender=q, limit=50)
    elif q:
        ids = disposal.db.rows("SELECT id FROM verdicts WHERE text LIKE ? ESCAPE '\\' ORDER BY id DESC LIMIT 50",
                               ("%" + q.replace("%", "\\%").replace("_", "\\_") + "%",))
        found = [s for s in (store.get(r["id"]) for r in ids) if s]
    results = _table(["verdict", "time", "action", "category", "score", "text"], _verdict_rows(found),
                     empty="no verdict matches" if q else "type a verdict id, a phone number or words of the text")
    body = (f'<form method="get" class="panel"><input name="q" size="50" value="{escape(q)}" '
            f'placeholder="verdict id, number or text 编号、号码或内容"> <button>Search 查询</button></form>{results}')
    return _page("Why was this message blocked? 为什么被拦截", body, user)


@router.get("/verdicts/{verdict_id}")
async def verdict_page(request: Request, verdict_id: int) -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    disposal = get_disposal(request)
    disposal.refresh()
    stored = disposal.db.store.get(verdict_id)
    if stored is None:
        return _page("Not found", f"<p class='error'>No verdict {verdict_id}.</p>", user, 404)
    v = stored.verdict
    reasons = "".join(f"<li>{escape(r)}</li>" for r in v.reasons()) or "<li>no signal scored</li>"
    signals = _table(["signal", "points", "evidence"], [
        [escape(s.name), f"{s.points:+g}",
         f'<span class="mono">{escape(json.dumps(s.evidence, ensure_ascii=False)[:400])}</span>']
        for s in sorted(v.signals, key=lambda s: -abs(s.points))])
    cid = disposal.campaigns.of_verdict(stored.id)
    campaign = f'<a href="/console/campaigns/{cid}">campaign {cid}</a>' if cid else "none"
    reports = disposal.db.rows("SELECT id, received_at, channel FROM disposal_reports WHERE verdict_id = ?",
                               (stored.id,))
    held = held_status_of(disposal.db.sql, [stored.id]).get(stored.id)
    held_line = f'<p><b>Held by the SMPP firewall 审核暂存:</b> {escape(describe_held(held))}</p>' if held else ""
    if stored.channel is Channel.CALL:
        what = (f'<b>Call 电话:</b> <span class="mono">{escape(stored.sender)}</span> → <span class="mono">'
                f'{escape(stored.recipient)}</span> (SIP Call-ID {escape(stored.external_id or "-")})')
    else:
        what = f'<b>Text 内容:</b> {escape(stored.text or "(removed by retention)")}'
    body = (f'<div class="panel"><p>{what}</p>'
            f'<p><b>Action:</b> {_action(v.action.value)} · <b>category</b> {escape(v.category.value)}'
            f'{" / " + escape(v.subtype) if v.subtype else ""} · <b>score</b> {v.score:.2f} · <b>unwanted</b> '
            f'{v.unwanted:.2f} · <b>model</b> {escape(v.model_version)}</p>'
            f'<p><b>Sender</b> <span class="mono">{escape(stored.sender)}</span> · <b>tenant</b> '
            f'{escape(stored.tenant)} · <b>channel</b> {escape(stored.channel.value)}'
            f' · <b>time</b> {escape(stored.time.isoformat())} · <b>campaign</b> {campaign} · '
            f'<b>reports</b> {len(reports)}</p>{held_line}</div>'
            f'<h2>Why 原因</h2><ol>{reasons}</ol><h2>Signals and evidence 信号与证据</h2>{signals}')
    return _page(f"Verdict #{stored.id}", body, user)


# ----------------------------------------------------------------------------------- campaigns


@router.get("/campaigns")
async def campaigns_page(request: Request) -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    disposal = get_disposal(request)
    items = await run_in_threadpool(lambda: (disposal.refresh(), disposal.campaigns.top(min_size=2, limit=100))[1])
    rows = [[f'<a href="/console/campaigns/{c["id"]}">#{c["id"]}</a>', str(c["size"]), str(c["senders"]),
             str(c["reports"]), str(c["blocked"]), escape(c["first_seen"][:16]), escape(c["last_seen"][:16]),
             escape(c["template"][:90])] for c in items]
    return _page("Campaigns 短信活动", _table(["id", "messages", "senders", "reports", "blocked", "first seen",
                                          "last seen", "template"], rows), user)


@router.get("/campaigns/{campaign_id}")
async def campaign_page(request: Request, campaign_id: int, done: str = "") -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    c = get_disposal(request).campaigns.get(campaign_id)
    if c is None:
        return _page("Not found", f"<p class='error'>No campaign {campaign_id}.</p>", user, 404)
    by_action = ", ".join(f"{escape(a)} {n}" for a, n in sorted(c["by_action"].items()))
    recent = _table(["verdict", "time", "sender", "action", "text"], [
        [f'<a href="/console/verdicts/{m["verdict_id"]}">#{m["verdict_id"]}</a>', escape(m["time"][:19]),
         f'<span class="mono">{escape(m["sender"][:14])}</span>', _action(m["action"]), escape((m["text"] or "")[:70])]
        for m in c["recent"]])
    form = ""
    if user.may("block"):
        form = (f'<form method="post" action="/console/blocks" class="panel"><h2>Block this campaign 封禁此活动</h2>'
                f'<input type="hidden" name="kind" value="campaign"><input type="hidden" name="value" '
                f'value="{c["id"]}"><label>Reason 原因 <input name="reason" required size="40"></label> '
                f'<label>Expires 期限 <input name="expires" value="30d" size="6"></label> '
                f'<button>Block 封禁</button></form>')
    ok = f'<p class="ok">{escape(done)}</p>' if done else ""
    body = (f'{ok}<div class="panel"><p><b>Template 模板:</b> <span class="mono">{escape(c["template"])}</span></p>'
            f'<p><b>Example:</b> {escape(c["example"])}</p><p><b>{c["size"]}</b> messages from <b>{c["senders"]}'
            f'</b> senders, <b>{c["reports"]}</b> reports; {by_action}; first {escape(c["first_seen"][:19])}, '
            f'last {escape(c["last_seen"][:19])}</p></div>{form}<h2>Latest messages</h2>{recent}')
    return _page(f"Campaign #{c['id']}", body, user)


# -------------------------------------------------------------------------------------- review


@router.get("/review")
async def review_page(request: Request) -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    disposal = get_disposal(request)
    items = await run_in_threadpool(lambda: (disposal.refresh(), disposal.review.open_items(limit=100))[1])
    can = user.may("label")
    rows = []
    for it in items:
        buttons = "".join(f'<button type="button" data-label="{lab}" title="key {k}">{k} {lab}</button> '
                          for k, lab in enumerate(LABELS, start=1)) if can else '<span class="muted">read-only</span>'
        rows.append(f'<tr data-id="{it["id"]}"><td>#{it["id"]}</td><td>{escape(it["source"])}</td>'
                    f'<td>{_action(it["action"])} {escape(it["category"] or "")} '
                    f'{(it["unwanted"] or 0):.2f}</td><td class="text">{escape(it["text"])}</td>'
                    f'<td>{buttons}</td></tr>')
    keys = " ".join(f"<kbd>{k}</kbd> {lab}" for k, lab in enumerate(LABELS, start=1))
    help_ = (f'<p class="keys">Keys: <kbd>j</kbd>/<kbd>k</kbd> move · {keys} · <kbd>s</kbd> skip</p>' if can else
             '<p class="muted">Your role can read the queue but not label it.</p>')
    table = (f'<table id="{"queue" if can else "queue-readonly"}" data-labels="{escape(json.dumps(LABELS))}">'
             f'<thead><tr><th>item</th><th>why queued</th><th>engine said</th><th>text</th><th>label</th></tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table>') if rows else '<p class="muted">Queue empty. 队列已清空。</p>'
    body = f'{help_}<p id="queue-status" class="muted" aria-live="polite"></p>{table}'
    return _page(f"Review queue 审核队列 ({len(items)})", body, user)


@router.post("/review/{item_id}/label")
async def review_label(request: Request, item_id: int) -> Response:
    user = _user(request)
    if not user:
        return json_response({"error": {"code": "unauthorized", "message": "log in first"}}, 401)
    if not user.may("label"):
        return json_response({"error": {"code": "forbidden", "message": f"role {user.role} may not label"}}, 403)
    try:
        form = await _form(request)
        item = get_disposal(request).review.label(item_id, form.get("label", ""), reviewer=user.name)
    except (ReviewError, Denied) as exc:
        return json_response({"error": {"code": "invalid_label", "message": str(exc)}}, 422)
    return json_response({"id": item["id"], "label": item["label"], "held": item.get("held")})


@router.post("/review/{item_id}/skip")
async def review_skip(request: Request, item_id: int) -> Response:
    user = _user(request)
    if not user or not user.may("label"):
        return json_response({"error": {"code": "forbidden", "message": "not allowed"}}, 403)
    try:
        await _form(request)
    except Denied as exc:
        return json_response({"error": {"code": "forbidden", "message": str(exc)}}, 403)
    get_disposal(request).review.skip(item_id, reviewer=user.name)
    return json_response({"id": item_id, "status": "skipped"})


# -------------------------------------------------------------------------------------- blocks


@router.get("/blocks")
async def blocks_page(request: Request, error: str = "", done: str = "") -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    book = get_disposal(request).blocks
    book.record_expiries()
    rows = []
    for b in book.list():
        state = "active" if b["active"] else ("expired" if b["status"] == "active" else b["status"])
        rows.append([f'<a href="/console/blocks/{b["id"]}">#{b["id"]}</a>', escape(state), escape(b["kind"]),
                     escape(b["display"][:60]), escape(b["reason"]), escape(b["decided_by"]),
                     escape((b["expires_at"] or "never")[:16]), str(b["pending_appeals"])])
    form = ""
    if user.may("block"):
        kinds = "".join(f"<option>{k}</option>" for k in KINDS)
        form = ('<form method="post" action="/console/blocks" class="panel"><h2>New block 新建封禁</h2>'
                f'<select name="kind">{kinds}</select> <input name="value" placeholder="number, 【签名】, domain, '
                'template text or campaign id" size="40" required> <input name="reason" placeholder="reason 原因" '
                'required> <input name="expires" placeholder="30d" size="6"> <button>Block 封禁</button></form>')
    msg = _notice(error, done)
    table = _table(["block", "state", "kind", "what", "reason", "decided by", "expires", "appeals pending"], rows,
                   empty="no blocks yet")
    return _page("Blocks and appeals 封禁与申诉", msg + form + table, user)


@router.post("/blocks")
async def create_block(request: Request) -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    if not user.may("block"):
        return _denied(user, "create blocks")
    disposal = get_disposal(request)
    try:
        form = await _form(request)
        if form.get("kind") == "campaign":
            disposal.refresh()
        b = disposal.blocks.create(form.get("kind", ""), form.get("value", ""), reason=form.get("reason", ""),
                                   decided_by=user.name, expires=form.get("expires") or None,
                                   evidence={"via": "console"})
    except (BlockError, ValueError, Denied) as exc:
        return RedirectResponse(f"/console/blocks?error={quote(str(exc))}", status_code=303)
    blocks_changed(request)
    return RedirectResponse(f"/console/blocks/{b['id']}?done={quote('Block created. 已封禁。')}", status_code=303)


@router.get("/blocks/{block_id}")
async def block_page(request: Request, block_id: int, error: str = "", done: str = "") -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    b = get_disposal(request).blocks.get(block_id)
    if b is None:
        return _page("Not found", f"<p class='error'>No block {block_id}.</p>", user, 404)
    state = "active 生效中" if b["active"] else ("expired" if b["status"] == "active" else "lifted 已解除")
    appeals = []
    for a in b["appeals"]:
        decide = escape(a["status"])
        if a["status"] == "pending" and user.may("block"):
            decide = (f'<form method="post" action="/console/appeals/{a["id"]}/decide" class="inline">'
                      '<input name="note" placeholder="why 理由" required> '
                      '<button name="decision" value="keep">Keep 维持</button> '
                      '<button name="decision" value="lift" class="secondary">Lift 解除</button></form>')
        elif a["status"] != "pending":
            decide += f' by {escape(a["decided_by"] or "")}: {escape(a["decision_note"] or "")}'
        appeals.append([f"#{a['id']}", escape(a["appellant"]), escape(a["statement"]), escape(a["filed_at"][:16]),
                        decide])
    audit = _table(["#", "at", "who", "action", "note"], [
        [str(x["seq"]), escape(x["at"][:19]), escape(x["actor"]), escape(x["action"]), escape(x["note"])]
        for x in b["audit"]])
    lift = ""
    if b["active"] and user.may("block"):
        lift = (f'<form method="post" action="/console/blocks/{b["id"]}/lift" class="panel">'
                '<input name="note" placeholder="why it is lifted" required size="40"> '
                '<button class="secondary">Lift block 解除封禁</button></form>')
    file_appeal = ""
    if b["active"] and not any(a["status"] == "pending" for a in b["appeals"]) and user.may("block"):
        file_appeal = (f'<form method="post" action="/console/blocks/{b["id"]}/appeal" class="panel">'
                       '<h2>Record an appeal 登记申诉</h2><input name="appellant" placeholder="appellant 申诉人" '
                       'required> <input name="statement" placeholder="statement 申诉理由" required size="40"> '
                       '<button>File appeal 提交</button></form>')
    msg = _notice(error, done)
    body = (f'{msg}<div class="panel"><p><b>{escape(b["kind"])}</b> {escape(b["display"])} · <b>{state}</b></p>'
            f'<p><b>Reason:</b> {escape(b["reason"])} · <b>decided by</b> {escape(b["decided_by"])} on '
            f'{escape(b["created_at"][:16])} · <b>expires</b> {escape((b["expires_at"] or "never")[:16])}</p>'
            f'<p><b>Evidence:</b> <span class="mono">{escape(b["evidence"])}</span></p></div>{lift}'
            f'<h2>Appeals 申诉</h2>{_table(["appeal", "appellant", "statement", "filed", "decision"], appeals)}'
            f'{file_appeal}<h2>Audit log 审计记录 (append-only)</h2>{audit}')
    return _page(f"Block #{b['id']}", body, user)


async def _block_action(request: Request, block_id: int, what: str, run) -> Response:  # noqa: ANN001
    user = _user(request)
    if not user:
        return _login_redirect(request)
    if not user.may("block"):
        return _denied(user, what)
    try:
        form = await _form(request)
        run(get_disposal(request).blocks, user, form)
    except (BlockError, Denied) as exc:
        return RedirectResponse(f"/console/blocks/{block_id}?error={quote(str(exc))}", status_code=303)
    blocks_changed(request)
    return RedirectResponse(f"/console/blocks/{block_id}?done={quote('Recorded. 已记录。')}", status_code=303)


@router.post("/blocks/{block_id}/lift")
async def lift_block(request: Request, block_id: int) -> Response:
    return await _block_action(request, block_id, "lift blocks",
                               lambda book, user, form: book.lift(block_id, actor=user.name, note=form.get("note", "")))


@router.post("/blocks/{block_id}/appeal")
async def appeal_block(request: Request, block_id: int) -> Response:
    return await _block_action(request, block_id, "record appeals", lambda book, user, form: book.appeal(
        block_id, appellant=form.get("appellant", ""), statement=form.get("statement", "")))


@router.post("/appeals/{appeal_id}/decide")
async def decide_appeal(request: Request, appeal_id: int) -> Response:
    appeal = get_disposal(request).db.one("SELECT block_id FROM disposal_appeals WHERE id = ?", (appeal_id,))
    block_id = appeal["block_id"] if appeal else 0
    return await _block_action(request, block_id, "decide appeals", lambda book, user, form: book.decide_appeal(
        appeal_id, decision=form.get("decision", ""), actor=user.name, note=form.get("note", "")))


# ------------------------------------------------------------------------------------- reports


@router.get("/reports")
async def reports_page(request: Request) -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    reports = get_disposal(request).reports.list(limit=200)
    rows = [[f"#{r['id']}", escape(r["received_at"][:16]), escape(r["channel"]), escape(r["sender_masked"]),
             escape(r["text"][:80]),
             f'<a href="/console/verdicts/{r["verdict_id"]}">#{r["verdict_id"]}</a> {_action(r["verdict_action"])}'
             if r["verdict_id"] else "not matched",
             f'<a href="/console/campaigns/{r["campaign_id"]}">#{r["campaign_id"]}</a>' if r["campaign_id"] else ""]
            for r in reports]
    return _page("Reports and complaints 举报投诉", _table(
        ["report", "received", "channel", "sender", "text", "verdict", "campaign"], rows, empty="no reports yet"), user)


@router.get("/regulator")
async def regulator_page(request: Request, tenant: str = "default", start: str = "", end: str = "") -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    today = datetime.now(UTC).date()
    start = start or (today - timedelta(days=1)).isoformat()
    end = end or (today + timedelta(days=1)).isoformat()
    q = f"tenant={quote(tenant)}&from={quote(start)}&to={quote(end)}"
    body = (f'<form method="get" class="panel"><label>Tenant <input name="tenant" value="{escape(tenant)}"></label> '
            f'<label>From <input name="start" value="{escape(start)}"></label> <label>To <input name="end" '
            f'value="{escape(end)}"></label> <button>Show</button></form>'
            f'<p><a href="/console/regulator/report?{q}&format=html">HTML (prints cleanly)</a> · '
            f'<a href="/console/regulator/report?{q}&format=csv">CSV</a></p>')
    return _page("Regulator report 监管报表", body, user)


@router.get("/regulator/report")
async def regulator_report(request: Request, tenant: str, format: str = "html", **_: Any) -> Response:
    user = _user(request)
    if not user:
        return _login_redirect(request)
    from skyshield.disposal import regulator
    from skyshield.disposal.schema import parse_time

    params = request.query_params
    try:
        report = regulator.build(get_disposal(request).db, tenant, parse_time(params.get("from")),
                                 parse_time(params.get("to")))
    except ValueError as exc:
        return _page("Regulator report", f'<p class="error">{escape(str(exc))}</p>', user, 422)
    if format == "csv":
        return Response(regulator.to_csv(report), media_type="text/csv; charset=utf-8")
    return HTMLResponse(regulator.to_html(report))
