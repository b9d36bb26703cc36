"""Triage on the ops page (issue 17, item 6), driven as an officer drives it: headless Chromium through
chromedriver (the W3C WebDriver protocol over HTTP), against `python -m streams.web` on the embedded broker.

The officer opens an alert's triage panel, acknowledges it with a note and assigns it; the state lands on the
compacted alert-actions topic; a second replica (with a login) shows it and records its own actions under its
login user; the alert's history link shows the traveller's stays, crossings and alerts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.records import AlertTriage, EntryBasisKind, Purpose, Stay, TriageStatus
from schemas.serde import Serde
from shekara.embedded import EmbeddedBroker, free_port
from streams.triage import TriageBoard
from streams.triage_topic import read_board
from tests.streams.test_web import KEY, make_alert, send, start_page, topic_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element reference key


class Browser:
    """The few WebDriver commands an officer's clicks need (https://www.w3.org/TR/webdriver2/)."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None and CHROMEDRIVER is not None
        self.port = free_port()
        self.driver = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.base}/status", timeout=2).json()["value"]["ready"]:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "chromedriver did not start"
            time.sleep(0.2)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}"]
        options = {"binary": CHROMIUM, "args": args}
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = f"{self.base}/session/" + self._call("POST", f"{self.base}/session", caps)["sessionId"]

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, url, json=body if method == "POST" else None, timeout=60)
        value = response.json()["value"]
        if response.status_code != 200:
            raise AssertionError(f"webdriver {method} {url}: {value}")
        return value

    def go(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def find(self, css: str) -> str | None:
        found = self._call("POST", f"{self.session}/elements", {"using": "css selector", "value": css})
        return found[0][ELEMENT] if found else None

    def wait(self, css: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while (element := self.find(css)) is None:
            assert time.monotonic() < deadline, f"{css} never appeared"
            time.sleep(0.2)
        return element

    def click(self, css: str) -> None:
        self._call("POST", f"{self.session}/element/{self.wait(css)}/click", {})

    def type(self, css: str, text: str) -> None:
        self._call("POST", f"{self.session}/element/{self.wait(css)}/value", {"text": text})

    def text(self, css: str) -> str:
        return str(self._call("GET", f"{self.session}/element/{self.wait(css)}/text"))

    def wait_text(self, css: str, condition: Callable[[str], bool], timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while not condition(text := self.text(css)):
            assert time.monotonic() < deadline, f"{css} never matched; last text {text!r}"
            time.sleep(0.2)
        return text

    def close(self) -> None:
        try:
            self._call("DELETE", self.session)
        finally:
            self.driver.terminate()
            self.driver.wait(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium/chromedriver are not installed on CI (Debian: chromium chromium-driver)")
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    b = Browser(tmp_path / "chromium")
    try:
        yield b
    finally:
        b.close()


def a_stay(at: datetime) -> Stay:
    return Stay(
        stay_id="s-" + uuid.uuid4().hex[:8],
        revision=1,
        traveller_key=KEY,
        nationality="TJK",
        entry_basis=EntryBasisKind.VISA_FREE,
        purpose=Purpose.WORK,
        entry_event_id="x-in",
        exit_event_id="x-out",
        entry_time=at - timedelta(days=40),
        exit_time=at - timedelta(days=2),
        entry_checkpoint="KZ-RU-ZHAISAN",
        exit_checkpoint="KZ-RU-SYRYM",
        days=39,
        allowed_days=30,
        days_over=9,
        rule_id="visa_free_general",
        rule_version="2023-01-27",
        anchor_time=at - timedelta(days=40),
    )


@pytest.mark.integration
@pytest.mark.slow
def test_officer_triages_on_the_page_and_every_replica_shows_it(
    broker: EmbeddedBroker, tmp_path: Path, browser: Browser
) -> None:
    settings = topic_settings(broker, tmp_path / "var")
    serde = Serde.from_settings(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    alert = make_alert("tp-1", due=now)
    send(settings, settings.topics.alerts, [serde.encode(alert, settings.topics.alerts)])
    send(settings, settings.topics.stays, [serde.encode(a_stay(now), settings.topics.stays)])
    page = start_page(settings, f"ops-triage-{uuid.uuid4().hex[:8]}", tmp_path / "p1")
    second = None
    try:
        page.wait_for("/api/alerts", lambda b: b["open"] == 1)
        browser.go(page.url + "/")
        row = f'tr[data-alert-id="{alert.alert_id}"]'
        browser.wait(row)
        # The row shows when it was raised, the whole key with its history link, and "new" triage.
        assert browser.text(f"{row} .key") == KEY
        assert browser.text(f"{row} .triage-state") == "new"
        browser.click(f"{row} .triage-open")
        browser.type("#t-note", "calling the host")
        browser.click("#t-ack")
        browser.wait_text("#t-result", lambda t: t.startswith("saved"))
        browser.type("#t-to", "bek")
        browser.click("#t-assign")
        browser.wait_text(f"{row} .triage-state", lambda t: t == "ack by ops (no login), assigned to bek, 1 note")
        assert "calling the host" in browser.text("#t-notes")
        # A refused action says why, in the panel.
        browser.click("#t-add-note")
        assert (
            browser.wait_text("#t-result", lambda t: t.startswith("not saved"))
            == "not saved: a note is required (--note TEXT)"
        )

        board = TriageBoard()
        read_board(settings, board)
        state = board.get(alert.alert_id)
        assert isinstance(state, AlertTriage)
        assert (state.status, state.acknowledged_by, state.assignee, state.revision) == (
            TriageStatus.ACKNOWLEDGED,
            "ops (no login)",
            "bek",
            2,
        )

        # Another replica (own consumer group, with a login) reads the compacted topic from the beginning.
        second = start_page(settings, f"ops-triage-{uuid.uuid4().hex[:8]}", tmp_path / "p2", password="tr1age-pw-9")
        body = second.wait_for("/api/alerts", lambda b: b["alerts"] and b["alerts"][0]["triage"] is not None)
        assert body["alerts"][0]["triage"]["assignee"] == "bek"
        assert body["alerts"][0]["emitted_time"] == alert.emitted_time.isoformat()
        posted = httpx.post(
            second.url + "/api/triage",
            json={"alert_id": alert.alert_id, "action": "note", "note": "host confirms departure"},
            auth=second.auth,
            timeout=30,
        )
        assert posted.status_code == 200, posted.text
        assert posted.json()["triage"]["notes"][-1]["author"] == "ops"  # the login user
        page.wait_for("/api/alerts", lambda b: len(b["alerts"][0]["triage"]["notes"]) == 2)
        # Refusals: an unknown alert, a form post (not JSON), no login.
        unknown = {"alert_id": "f" * 64, "action": "ack"}
        assert httpx.post(second.url + "/api/triage", json=unknown, auth=second.auth, timeout=10).status_code == 404
        form = httpx.post(second.url + "/api/triage", data={"alert_id": alert.alert_id}, auth=second.auth, timeout=10)
        assert form.status_code == 415
        assert httpx.post(second.url + "/api/triage", json=unknown, timeout=10).status_code == 401

        # The history link: the traveller's crossings, stays and alerts.
        browser.go(page.url + "/")
        browser.wait(row)
        browser.click(f"{row} a.history")
        status = browser.wait_text("#status", lambda t: "crossings" in t or "cannot" in t, timeout=30)
        assert status == "2 crossings, 1 stays, 1 alert records", status
        assert "KZ-RU-SYRYM" in browser.text("#crossings") and "EXIT" in browser.text("#crossings")
        assert "ACKNOWLEDGED, bek" in browser.text("#alerts")
        assert browser.text("#warehouse") == f"shekara sql --saved travel_history -p traveller_key={KEY}"
        assert page.get("/api/history?key=abc").status_code == 400
    finally:
        page.stop()
        if second is not None:
            second.stop()
