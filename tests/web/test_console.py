"""The console as people use it, in a real browser against a real daemon fed by the simulator (SPEC "The console").

One township per module (tests/web/town.py: orders wait for an inspector), Debian's chromium at phone size
(390×844) and desk size. Each page's screenshot at both sizes is kept under build/screenshots/.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from quotad.web.app import OPEN, ROUTES
from tests.shell.feedtown import journal_of
from tests.shell.township import eventually
from tests.web.conftest import DESK, PHONE, SHOTS, viewport
from tests.web.town import PASSWORDS, ConsoleTown, Http

PAGES = ["/", "/firms", "/firms/rongsheng-paper", "/orders", "/inspections", "/alerts", "/rota", "/reports"]


def login(browser: webdriver.Chrome, town: ConsoleTown, name: str) -> None:
    browser.delete_all_cookies()
    browser.get(town.base + "/login")
    browser.find_element(By.NAME, "name").send_keys(name)
    browser.find_element(By.NAME, "password").send_keys(PASSWORDS[name])
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda b: "/login" not in b.current_url)


def errors(browser: webdriver.Chrome) -> list[str]:
    """The browser's console errors since the last call (a failed resource, a script error)."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def pending_firm(town: ConsoleTown) -> str:
    """A firm whose order waits for an inspector (the paper mill draws on its off day early on 10-20)."""
    found: list[str] = []

    def check() -> bool:
        for event in journal_of(town.dir / "state", "reading"):
            for order in event.get("orders") or []:  # type: ignore[union-attr]
                if order["state"] == "pending":
                    found.append(order["firm"])
        return bool(found)

    eventually(check, "a pending order", 90.0)
    return found[0]


def test_no_page_and_no_action_without_login(town: ConsoleTown) -> None:
    """Every route the console has (its own table, so a new one cannot be missed), without a login."""
    anon = Http(town.port)
    samples = {"{firm}": "rongsheng-paper", "{action}": "confirm", "{name}": "daily-2010-10-20.html",
               "{name:.+}": "console.css"}  # fmt: skip
    assert len(ROUTES) >= 20
    for method, pattern, handler in ROUTES:
        path = pattern
        for param, value in samples.items():
            path = path.replace(param, value)
        if method == "GET" and handler == "photo":
            path = "/photos/" + "0" * 64 + ".jpg"
        body = {"firm": "g-001", "reason": "x", "note": "x", "csrf": "x", "name": "leader", "password": "wrong"}
        status, headers, _text = anon.request(method, path, body if method == "POST" else None)
        if pattern in OPEN or pattern.startswith("/static/"):
            assert status == (401 if pattern == "/login" and method == "POST" else 200), (method, path, status)
        elif method == "GET" and handler.endswith("_page"):
            assert status == 303, (method, path, status)  # a page: to the login, and back after it
            assert headers["Location"].startswith("/login?next="), path
        else:
            assert status == 401, (method, path, status)  # an action, a file, the stream, the figures
    status, headers, text = anon.request("GET", "/login")
    assert status == 200
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert "用户名" in text
    assert not journal_of(town.dir / "state", "issue")
    assert not journal_of(town.dir / "state", "talk")
    assert not journal_of(town.dir / "state", "order")


def test_each_role_logs_in_and_sees_the_township_live(town: ConsoleTown, desk: webdriver.Chrome) -> None:
    for name, role in (("leader", "领导（只读）"), ("inspector", "督查"), ("operator", "操作员")):
        login(desk, town, name)
        assert f"{name}（{role}）" in desk.find_element(By.CSS_SELECTOR, ".who").text
        assert "全镇用电" in desk.find_element(By.TAG_NAME, "h1").text
        assert "54,611" in desk.find_element(By.CSS_SELECTOR, ".figures").text
        WebDriverWait(desk, 10).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".uplot canvas")) >= 2)
        assert not errors(desk)
    # the figures follow the readings: the page is not reloaded, yet its "updated" time moves on
    first = desk.find_element(By.ID, "updated").text
    WebDriverWait(desk, 30).until(lambda b: b.find_element(By.ID, "updated").text != first)
    cookie = desk.get_cookie("quotad_session")
    assert cookie is not None
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"


def test_a_pending_order_is_confirmed_from_a_phone(town: ConsoleTown, phone: webdriver.Chrome) -> None:
    firm = pending_firm(town)
    login(phone, town, "inspector")
    phone.get(town.base + "/orders")
    form = phone.find_element(By.CSS_SELECTOR, f"form[action='/orders/{firm}/confirm']")
    assert phone.find_elements(By.CSS_SELECTOR, f"form[action='/orders/{firm}/dismiss']")
    assert not phone.find_elements(By.CSS_SELECTOR, "form[action='/orders/issue']")  # an operator's, not hers
    form.find_element(By.NAME, "reason").send_keys("现场核实：造纸车间在生产")
    form.find_element(By.CSS_SELECTOR, "button").click()
    WebDriverWait(phone, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".flash.ok"))
    assert "已下达" in phone.find_element(By.CSS_SELECTOR, ".flash.ok").text
    confirmed = [e for e in journal_of(town.dir / "state", "order") if e["firm"] == firm]
    assert [(e["action"], e["by"], e["reason"]) for e in confirmed] == [
        ("confirm", "inspector", "现场核实：造纸车间在生产")
    ]
    assert confirmed[0]["order"]["state"] == "issued"  # type: ignore[index]
    # the firm's page shows the evidence behind the order (its meter's readings and the arithmetic) and who confirmed
    phone.get(f"{town.base}/firms/{firm}")
    evidence = phone.find_element(By.CSS_SELECTOR, ".order .evidence")
    assert "kWh" in evidence.text
    assert phone.find_elements(By.CSS_SELECTOR, ".order .evidence table.meters tbody tr")
    assert "inspector · 现场核实：造纸车间在生产" in phone.find_element(By.CSS_SELECTOR, ".order .history").text
    assert not errors(phone)


def test_a_visit_with_a_photo_from_a_phone(town: ConsoleTown, phone: webdriver.Chrome, tmp_path: Path) -> None:
    picture = tmp_path / "site.jpg"
    Image.new("RGB", (640, 480), (90, 120, 160)).save(picture, "JPEG")
    login(phone, town, "inspector")
    phone.get(town.base + "/inspections?firm=g-003")
    form = phone.find_element(By.CSS_SELECTOR, "form[action='/inspections']")
    form.find_element(By.CSS_SELECTOR, "input[name=result][value=rectify]").click()
    form.find_element(By.NAME, "finding").send_keys("空压机未停，已要求整改")
    form.find_element(By.NAME, "photo").send_keys(str(picture))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(phone, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".flash.ok"))
    visits = [v for v in journal_of(town.dir / "state", "inspection") if v["firm"] == "g-003"]
    assert len(visits) == 1
    assert visits[0]["by"] == "inspector"
    assert visits[0]["result"] == "rectify"
    photo = visits[0]["photo"]
    assert isinstance(photo, dict)
    assert photo["type"] == "jpg"
    kept = town.dir / "state" / "photos" / f"{photo['sha256']}.jpg"
    assert kept.read_bytes() == picture.read_bytes()
    # the photo is shown to people logged in, and to no one else
    link = phone.find_element(By.CSS_SELECTOR, f"a[href='/photos/{photo['sha256']}.jpg']")
    assert link.text == "照片"
    operator = Http(town.port)
    operator.login("operator")
    status, headers, _ = operator.request("GET", f"/photos/{photo['sha256']}.jpg")
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert Http(town.port).request("GET", f"/photos/{photo['sha256']}.jpg")[0] == 401


def test_a_bad_photo_is_refused_and_nothing_recorded(town: ConsoleTown, tmp_path: Path) -> None:
    inspector = Http(town.port)
    assert inspector.login("inspector") == 303
    token = inspector.csrf("/inspections")
    boundary = "----quotadtest"
    fields = {"csrf": token, "firm": "g-004", "result": "ok", "finding": "正常", "back": "/inspections"}
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="x.jpg"\r\n'
    body += (head + "Content-Type: image/jpeg\r\n\r\n").encode() + b"not a picture"
    body += f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", town.port, timeout=20)
    conn.request("POST", "/inspections", body=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Origin": town.base,
        "Cookie": f"quotad_session={inspector.cookie}"})  # fmt: skip
    response = conn.getresponse()
    location = response.getheader("Location") or ""
    conn.close()
    assert response.status == 303
    assert "error=" in location
    assert not [v for v in journal_of(town.dir / "state", "inspection") if v["firm"] == "g-004"]


def test_an_alert_arrives_live(town: ConsoleTown, desk: webdriver.Chrome) -> None:
    login(desk, town, "leader")
    desk.get(town.base + "/alerts")
    WebDriverWait(desk, 15).until(lambda b: b.find_element(By.ID, "live").is_displayed())
    done = subprocess.run(
        [sys.executable, "-m", "quotad", "order", "issue", "g-005", "--reason", "拒不执行", "--by", "王督查",
         "-c", str(town.config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    issued = journal_of(town.dir / "state", "issue")
    ids = [a["id"] for e in issued for a in e.get("alerts") or []]  # type: ignore[union-attr]
    assert ids, issued
    WebDriverWait(desk, 15).until(
        lambda b: any(li.get_attribute("data-id") in ids for li in b.find_elements(By.CSS_SELECTOR, "#alerts li"))
    )
    shown = desk.find_element(By.CSS_SELECTOR, "#alerts li.fresh").text
    assert "新盛木业" in shown
    assert not errors(desk)


def test_a_viewer_is_refused_an_operators_action(town: ConsoleTown) -> None:
    leader = Http(town.port)
    assert leader.login("leader") == 303
    status, _h, page = leader.request("GET", "/orders?state=all")
    assert status == 200
    assert "/orders/issue" not in page
    assert "确认下达" not in page
    token = leader.csrf("/firms/g-005")  # the logout form carries the token on every page
    before = len(journal_of(town.dir / "state", "order"))
    status, _h, text = leader.request("POST", "/orders/g-005/lift", {"csrf": token, "reason": "领导要求"})
    assert status == 403
    assert "不能执行此操作" in text
    status, _h, _t = leader.request("POST", "/orders/issue", {"csrf": token, "firm": "g-006", "reason": "x"})
    assert status == 403
    assert len(journal_of(town.dir / "state", "order")) == before
    assert not [e for e in journal_of(town.dir / "state", "issue") if e["firm"] == "g-006"]


def test_a_form_from_another_origin_is_refused(town: ConsoleTown) -> None:
    operator = Http(town.port)
    assert operator.login("operator") == 303
    token = operator.csrf()
    form = {"csrf": token, "firm": "g-007", "reason": "测试", "cid": "a" * 32}
    assert operator.request("POST", "/orders/issue", form, {"Origin": "http://evil.example"})[0] == 403
    assert operator.request("POST", "/orders/issue", form, {"Origin": "", "Referer": ""})[0] == 403
    assert operator.request("POST", "/orders/issue", {**form, "csrf": "forged"})[0] == 403
    assert not [e for e in journal_of(town.dir / "state", "issue") if e["firm"] == "g-007"]
    # the same form from the console itself is carried out, once however often it is sent
    for _ in range(2):
        status, headers, _t = operator.request("POST", "/orders/issue", form)
        assert status == 303
        assert "said=" in headers["Location"]
    issued = [e for e in journal_of(town.dir / "state", "issue") if e["firm"] == "g-007"]
    assert len(issued) == 1
    assert issued[0]["by"] == "operator"
    assert issued[0]["id"] == "a" * 32


def test_repeated_wrong_passwords_lock_the_name_out(town: ConsoleTown) -> None:
    client = Http(town.port)
    for _ in range(5):
        assert client.login("locked", "wrong-password") == 401
    assert client.login("locked") == 401  # the right password, but locked out for a quarter of an hour
    assert client.cookie is None
    assert Http(town.port).login("leader") == 303  # another name is not locked out
    log = town.town.log()
    assert log.count("console login failed for 'locked'") == 5
    assert "console login refused for 'locked'" in log
    assert "wrong-password" not in log


@pytest.mark.parametrize(("label", "size"), [("phone", PHONE), ("desk", DESK)])
def test_every_page_renders_without_errors(town: ConsoleTown, label: str, size: tuple[int, int],
                                           phone: webdriver.Chrome, desk: webdriver.Chrome) -> None:  # fmt: skip
    browser = phone if label == "phone" else desk
    login(browser, town, "operator")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for path in PAGES:
        viewport(browser, *size)
        browser.get(town.base + path)
        WebDriverWait(browser, 10).until(lambda b: b.execute_script("return document.readyState") == "complete")
        assert browser.find_element(By.TAG_NAME, "h1").text, path
        assert "出错了" not in browser.page_source, path
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= size[0], f"{path} is wider than the {label} ({width} px)"  # no sideways scrolling
        height = browser.execute_script("return document.body.scrollHeight")
        viewport(browser, size[0], min(max(size[1], height), 4000))  # the whole page in one shot
        time.sleep(0.3)
        name = re.sub(r"[^a-z0-9]+", "-", path.strip("/")) or "today"
        png = browser.get_screenshot_as_png()
        Image.open(io.BytesIO(png)).verify()
        (SHOTS / f"{label}-{name}.png").write_bytes(png)
        assert not errors(browser), path
    viewport(browser, *size)


def test_today_data_is_the_engines(town: ConsoleTown) -> None:
    client = Http(town.port)
    client.login("leader")
    status, _h, text = client.request("GET", "/api/today")
    data = json.loads(text)
    assert status == 200
    assert data["cap_kwh"] == 54611
    assert data["curve"]
    assert data["curve"][-1][1] == data["consumed_kwh"]
    values = [v for _t, v in data["curve"]]
    assert values == sorted(values)  # cumulative


def test_the_reports_archive_serves_its_files_and_nothing_else(town: ConsoleTown) -> None:
    reports = town.dir / "state" / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "daily-2010-10-19.html").write_text("<h1>日报</h1>", encoding="utf-8")
    (reports / "daily-2010-10-19.xlsx").write_bytes(b"PK\x03\x04")
    client = Http(town.port)
    client.login("leader")
    status, _h, page = client.request("GET", "/reports")
    assert status == 200
    assert 'href="/reports/daily-2010-10-19.html"' in page
    assert 'href="/reports/daily-2010-10-19.xlsx"' in page
    status, headers, text = client.request("GET", "/reports/daily-2010-10-19.html")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "日报" in text
    status, headers, _t = client.request("GET", "/reports/daily-2010-10-19.xlsx")
    assert headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    for name in ("..%2Fquotad.db", "quotad.db", "%2E%2E%2Fusers", "daily-2010-10-18.html"):
        assert client.request("GET", f"/reports/{name}")[0] == 404, name
    assert client.request("GET", "/photos/..%2F..%2Fusers")[0] == 404


def test_a_channel_that_does_not_deliver_is_seen_on_the_today_page(town: ConsoleTown) -> None:
    """The leaders' webhook has nothing listening: the escalations queued for it wait (never lost), and the today
    page says so, with what the channel answered, where the log alone would have said it."""
    client = Http(town.port)
    client.login("operator")

    def refused() -> bool:
        _status, _h, text = client.request("GET", "/")
        return "leaders-hook" in text and "未送达" in text

    eventually(refused, "the leaders' channel shown as not delivering", 60.0)
    _status, _h, text = client.request("GET", "/")
    section = text[text.index("<h2>通知渠道</h2>") :]
    assert "渠道答复：ConnectionRefusedError" in section
    assert int(re.search(r"待发送 (\d+)", section)[1]) >= 1  # type: ignore[index]
    assert "已送达 0" in section
