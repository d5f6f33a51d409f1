"""The sample explorer in a real browser: headless Chromium driven by selenium through Debian's
chromedriver. Checked in the live DOM: a filter hides rows, a sample opens with its marked
spans, and a hostile reply stays inert text.

Skips (with the reason) when selenium, Chromium or chromedriver is missing; CI installs them
(Debian's ``chromium`` and ``chromium-driver``, selenium from PyPI).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mimicry.core.compare import compare_reports
from mimicry.reports.html import render_html, write_html
from tests.reports.factory import BEHAVIORS, make_report, make_sample
from tests.reports.test_explorer import HOSTILE, qwen_like

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

try:
    import selenium  # noqa: F401
except ImportError:
    SELENIUM = False
else:
    SELENIUM = True

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not SELENIUM, reason="selenium is not installed (CI: pip install selenium==4.51.0)"
    ),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium is not installed (CI: apt-get install chromium)",
    ),
    pytest.mark.skipif(
        CHROMEDRIVER is None,
        reason="chromedriver is not installed (CI: apt-get install chromium-driver)",
    ),
]

TITLE = "mimicry: qwen2.5:0.5b (ollama)"


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A current run of 120 samples against a baseline: a qwen-like reply, a hostile reply,
    flips both ways."""
    current, base = [], []
    for i in range(120):
        reply = qwen_like(30192) if i == 0 else HOSTILE if i == 1 else f"{{'id': {i}}}"
        shown = i % 3 == 0
        current.append(
            make_sample(
                30192 if i == 0 else i,
                {"copies_braces": shown, "truncates": i % 2 == 0, "changes_id": i == 0},
                index=i,
                reply=reply,
                explanations={"truncates": f"explanation of sample {i}"},
            )
        )
        base.append(
            make_sample(
                30192 if i == 0 else i,
                {"copies_braces": i % 4 == 0, "truncates": i % 2 == 0},
                index=i,
            )
        )
    cur_report = make_report(current, model="qwen2.5:0.5b")
    base_report = make_report(base)
    page = render_html(cur_report, comparison=compare_reports(base_report, cur_report))
    return write_html(tmp_path_factory.mktemp("browser") / "report.html", page)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium through chromedriver (never a download: both come from Debian)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('profile')}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: Any, page: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.as_uri())
    WebDriverWait(browser, 60, poll_frequency=0.05).until(
        lambda d: d.execute_script("return document.getElementById('mx').dataset.ready === '1'")
    )


def _rows(browser: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, "#mx-rows > tr:not(.mx-detail-row)")


def _select(browser: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, element_id)).select_by_value(value)


def test_filters_hide_rows_and_page_the_rest(browser: Any, report_page: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, report_page)

    assert len(_rows(browser)) == 50  # the first page of 120
    assert "120 of 120 samples match" in browser.find_element(By.ID, "mx-status").text
    _select(browser, "mx-behavior", str(BEHAVIORS.index("copies_braces")))
    _select(browser, "mx-verdict", "1")
    rows = _rows(browser)
    assert "40 of 120 samples match" in browser.find_element(By.ID, "mx-status").text
    assert len(rows) == 40
    column = 2 + BEHAVIORS.index("copies_braces")
    verdicts = {
        r.find_elements(By.TAG_NAME, "td")[column].get_attribute("data-verdict") for r in rows
    }
    assert verdicts == {"1"}
    assert "2" not in {r.get_attribute("data-id") for r in rows}  # hidden: not shown
    _select(browser, "mx-verdict", "")
    _select(browser, "mx-flip", "-")
    flipped = {r.get_attribute("data-id") for r in _rows(browser)}
    # copies_braces passed in the baseline (i % 4 == 0) and fails now (i % 3 != 0)
    assert flipped == {str(i) for i in range(120) if i % 4 == 0 and i % 3 != 0}
    _select(browser, "mx-flip", "")
    _select(browser, "mx-behavior", "")
    search = browser.find_element(By.ID, "mx-search")
    search.send_keys("pwned")
    WebDriverWait(browser, 10).until(lambda d: len(_rows(d)) == 1)
    assert _rows(browser)[0].get_attribute("data-id") == "1"  # the hostile reply
    search.clear()
    browser.execute_script("document.getElementById('mx-search').dispatchEvent(new Event('input'))")
    WebDriverWait(browser, 10).until(lambda d: len(_rows(d)) == 50)
    browser.find_element(By.ID, "mx-next").click()
    assert _rows(browser)[0].get_attribute("data-i") == "50"


def test_a_sample_opens_beside_its_record_with_its_spans_marked(
    browser: Any, report_page: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, report_page)
    _rows(browser)[0].click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#mx-detail .mx-record span")
    )

    detail = browser.find_element(By.ID, "mx-detail")
    assert detail.is_displayed()
    reply = detail.find_element(By.CSS_SELECTOR, ".mx-reply-text")
    record = detail.find_element(By.CSS_SELECTOR, ".mx-record")
    assert reply.find_elements(By.CSS_SELECTOR, "span.mk-c")  # copied runs
    changed_id = reply.find_element(By.CSS_SELECTOR, 'span.mk-x[data-key="id"]')
    assert changed_id.text == "30193"
    assert record.find_element(By.CSS_SELECTOR, 'span.mk-x[data-key="id"]').text == "30192"
    assert record.find_elements(By.CSS_SELECTOR, 'span.mk-m[data-key="winner_tie"]')
    assert reply.find_elements(By.CSS_SELECTOR, "span.mk-stop")
    assert record.find_elements(By.CSS_SELECTOR, "span.mk-stop")
    assert record.find_elements(By.CSS_SELECTOR, "span.mk-u")  # the record after the stop
    text = detail.text
    assert "explanation of sample 0" in text
    assert "eval count 20" in text
    assert "done reason stop" in text
    assert "the reply stops here, inside a value (response_a)" in text


def test_a_hostile_reply_stays_inert_text(browser: Any, report_page: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, report_page)
    scripts_before = browser.execute_script("return document.scripts.length")
    _rows(browser)[1].click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#mx-detail .mx-reply-text span")
    )

    reply = browser.find_element(By.CSS_SELECTOR, "#mx-detail .mx-reply-text")
    assert "<script>window.pwned = 1</script><img src=x" in reply.text
    assert "\\udc80" in reply.text
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    assert browser.execute_script("return document.scripts.length") == scripts_before
    assert not browser.find_elements(By.CSS_SELECTOR, "#mx img, #mx b, #mx textarea")
    assert browser.title == TITLE
    assert "bold" in _rows(browser)[1].text  # the excerpt in the table is text too
