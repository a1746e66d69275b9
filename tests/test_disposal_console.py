"""The operator console end to end in headless Chromium: login with roles, dashboard charts, "why was this
blocked?", a reviewer labelling with the keyboard, an operator blocking a campaign and deciding an appeal,
an auditor who can read but not block. Skips when /usr/bin/chromium or playwright is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from disposal_helpers import CHROMIUM, CHROMIUM_ARGS, PERSONAL, check, disposal_of, live_server, login, wave

PASSWORD = "correct horse battery"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} not installed (apt-get install chromium fonts-wqy-microhei)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("playwright", reason="playwright (dev extra) not installed")
    from fastapi.testclient import TestClient

    from skyshield.api.app import create_app
    from skyshield.config import load_settings
    from skyshield.console.auth import Users

    tmp = tmp_path_factory.mktemp("console")
    db = f"sqlite:///{tmp / 'console.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("SKYSHIELD_DB", db)
    mp.delenv("SKYSHIELD_KEY_FILE", raising=False)
    app = create_app(None, load_settings(db))
    # Traffic and reports through the API, as in production (no `with`: the live server keeps the store open).
    client = TestClient(app)
    check(client, [*wave(6), PERSONAL, {"text": "【顺丰】您的快递已到驿站，取件码 4821", "sender": "95338"}])
    client.post("/v1/reports", json={"reporter": "13800000001", "sender": PERSONAL["sender"], "text": PERSONAL["text"]})
    client.post("/v1/reports", json={"reporter": "13800000002", "sender": "17000000002", "text": wave(6)[2]["text"]})
    users = Users(disposal_of(app).db)
    for name, role in (("olga", "operator"), ("rita", "reviewer"), ("audrey", "auditor")):
        users.add(name, role, PASSWORD)
    with live_server(app) as base:
        yield base, tmp
    mp.undo()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _login(browser, base: str, name: str):
    return login(browser, base, name, PASSWORD)


def _not_blank(path: Path) -> None:
    from PIL import Image

    img = Image.open(path).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 100, f"{path} looks blank"


def test_a_wrong_password_does_not_get_in(browser, server):
    base, _ = server
    page = browser.new_page()
    page.goto(f"{base}/console/login")
    page.fill("input[name=name]", "rita")
    page.fill("input[name=password]", "wrong password!")
    page.click("button:has-text('Log in')")
    assert "wrong user name or password" in page.inner_text("main")
    page.goto(f"{base}/console/review")
    assert "/console/login" in page.url
    page.close()


def test_dashboard_shows_charts_and_chinese_renders(browser, server):
    base, tmp = server
    page = _login(browser, base, "audrey")
    assert page.locator("svg.chart rect").count() > 5  # traffic bars and the campaign / reported-sender bars
    assert "170****0002" in page.inner_text("main")  # top reported sender
    shot = tmp / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    _not_blank(shot)
    # With no CJK font every character is the same empty box: two different words would look identical.
    page.set_content('<span id="a" style="font-size:40px">审核队列</span><br><span id="b" style="font-size:40px">'
                     '封禁申诉</span>')
    a, b = page.locator("#a").screenshot(), page.locator("#b").screenshot()
    assert a != b, "Chinese renders as identical boxes: install fonts-wqy-microhei"
    page.close()


def test_search_answers_why_a_message_was_blocked(browser, server):
    base, _ = server
    page = _login(browser, base, "audrey")
    page.goto(f"{base}/console/search")
    page.fill("input[name=q]", "额度已提升")
    page.click("button:has-text('Search')")
    page.locator("main table a").first.click()
    text = page.inner_text("main")
    assert "Why" in text and "MODEL_" in text and "campaign" in text
    page.close()


def test_a_reviewer_labels_with_the_keyboard_and_the_message_leaves_the_queue(browser, server):
    base, tmp = server
    page = _login(browser, base, "rita")
    page.goto(f"{base}/console/review")
    rows = page.locator("#queue tbody tr")
    before = rows.count()
    assert before >= 1
    first_id = rows.first.get_attribute("data-id")
    assert "selected" in (rows.first.get_attribute("class") or "")
    page.keyboard.press("1")  # personal: the reported message is a family text
    page.wait_for_selector(f'#queue tr[data-id="{first_id}"]', state="detached")
    status = page.inner_text("#queue-status")
    assert f"Labelled #{first_id} as personal" in status
    assert ("Queue empty" in status) == (before == 1)
    page.screenshot(path=str(tmp / "review.png"))
    page.reload()
    assert page.locator(f'tr[data-id="{first_id}"]').count() == 0
    page.close()


def test_an_auditor_can_read_blocks_but_not_make_one(browser, server):
    base, _ = server
    page = _login(browser, base, "audrey")
    page.goto(f"{base}/console/campaigns/1")
    assert "Block this campaign" not in page.inner_text("main")
    page.goto(f"{base}/console/blocks")
    assert page.locator("form[action='/console/blocks']").count() == 0
    status = page.evaluate("""async () => (await fetch('/console/blocks', {method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded'},
        body: 'kind=number&value=13911112222&reason=x'})).status""")
    assert status == 403
    page.reload()
    assert "no blocks yet" in page.inner_text("main")
    page.close()


def test_an_operator_blocks_a_campaign_and_an_appeal_goes_round(browser, server):
    base, tmp = server
    page = _login(browser, base, "olga")
    page.goto(f"{base}/console/campaigns")
    page.locator("main table a").first.click()
    page.fill("input[name=reason]", "贷款诈骗短信 wave")
    page.click("button:has-text('Block')")
    assert "Block created" in page.inner_text("main") and "active" in page.inner_text("main")
    page.fill("input[name=appellant]", "优选金融")
    page.fill("input[name=statement]", "我们是持牌机构")
    page.click("button:has-text('File appeal')")
    page.fill("form[action*='/decide'] input[name=note]", "complaints confirmed 投诉属实")
    page.click("button:has-text('Keep')")
    text = page.inner_text("main")
    assert "kept by olga" in text
    audit = page.locator("table").last.inner_text()
    assert [w for w in ("create", "appeal", "appeal_kept") if w in audit] == ["create", "appeal", "appeal_kept"]
    page.screenshot(path=str(tmp / "block.png"), full_page=True)
    _not_blank(tmp / "block.png")
    page.close()
