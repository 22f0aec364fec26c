"""`loopctl dashboard` in a real headless Chromium (Selenium + Debian's chromedriver), against
real controller, driver and dashboard processes: the page shows a running campaign and its
new results as they arrive, approves from the page through the operator path, refuses
actions without the token, draws a two-objective front and explains a model's choice.

Screenshots of every view are written under the test's temp folder (``*.png``)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TCP_ANY, Procs, count, db_rows, loopctl, scaled, wait_for
from tests.specs import branin, branin_fn

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OPEN = re.compile(r"open (http://\S+/)\?token=(\S+)")
READ_ONLY = re.compile(r"dashboard for \S+ at (http://\S+/)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.skip(
            f"browser tests need {' and '.join(missing)} (Debian: apt-get install chromium "
            "chromium-driver; `make test` installs them when it runs as root)"
        )
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1280,1100")
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService(CHROMEDRIVER))
    drv.set_page_load_timeout(scaled(20))
    try:
        yield drv
    finally:
        drv.quit()


def dashboard(procs: Procs, db: Path, *extra: str) -> tuple[str, str]:
    """Start `loopctl dashboard` on any free port; its URL and token, from what it prints."""
    p = procs.start("dashboard", str(db), "--port", "0", *extra, log="dashboard.log")
    found: list[tuple[str, str]] = []

    def printed() -> bool:
        text = procs.log("dashboard.log")
        m = OPEN.search(text)
        if m:
            found.append((m.group(1), m.group(2)))
        elif "read-only:" in text and (r := READ_ONLY.search(text)):
            found.append((r.group(1), ""))
        return bool(found)

    procs.wait_for(printed, 30, "the dashboard to print its URL", p)
    return found[0]


def post(url: str, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Loopctl-Token"] = token
    req = urllib.request.Request(
        url + "api/action", json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=scaled(10)) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def until(drv: Any, cond: Callable[[], bool], what: str, timeout: float = 20) -> None:
    from selenium.common.exceptions import WebDriverException

    def safe() -> bool:
        try:
            return bool(cond())
        except WebDriverException:  # an element replaced while we looked: look again
            return False

    wait_for(safe, timeout, what)


def text(drv: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(drv.find_element(By.CSS_SELECTOR, css).text)


def view(drv: Any, name: str, shot: Path) -> None:
    """Switch the page to a view, wait until it has drawn it, and photograph it."""
    before = drv.execute_script("return document.body.dataset.rendered || ''")
    drv.execute_script(f"location.hash = '#{name}'")
    until(
        drv,
        lambda: drv.execute_script(
            "return document.body.dataset.view === arguments[0] && "
            "document.body.dataset.rendered !== arguments[1]",
            name.split("/")[0],
            before,
        ),
        f"the {name} view",
    )
    drv.save_screenshot(str(shot))


def loo_points(drv: Any) -> int:
    """Points of the leave-one-out chart drawn (0 before it is)."""
    return int(
        drv.execute_script(
            "const e = document.getElementById('loo-points'); "
            "return e ? +e.getAttribute('data-points') : 0"
        )
    )


def statuses(db: Path) -> dict[str, str]:
    if count(db, "SELECT COUNT(*) FROM trials") == 0:
        return {}
    return dict(db_rows(db, "SELECT id, status FROM trials"))


def decisions(db: Path) -> int:
    return count(
        db, "SELECT COUNT(*) FROM events WHERE kind IN ('trial_approved', 'trial_rejected')"
    )


def test_live_campaign_approve_from_the_page(tmp_path: Path, procs: Procs, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 3},
        execution={"max_in_flight": 2, "approval": "manual"},
    )
    db = tmp_path / "live.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    procs.driver(procs.endpoint(ctl), "d1", "--latency", "0.2")
    wait_for(lambda: len(statuses(db)) == 2, 30, "two proposals")
    url, token = dashboard(procs, db)

    # no token, a wrong token: refused with a reason, nothing recorded
    code, reply = post(url, {"action": "approve", "trials": ["T0001"], "operator": "eve"}, None)
    assert code == 403 and "no token" in reply["error"]
    code, reply = post(url, {"action": "pause", "operator": "eve"}, "not-the-token")
    assert code == 403 and "wrong token" in reply["error"]

    browser.get(url)  # opened without the token: the page reads, but cannot act
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "button.approve"), "pending")
    browser.find_element(By.CSS_SELECTOR, "button.approve[data-t='T0001']").click()
    until(browser, lambda: "no token" in text(browser, "#msg"), "the refusal on the page")
    assert decisions(db) == 0 and statuses(db)["T0001"] == "proposed"
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'campaign_paused'") == 0

    browser.get(f"{url}?token={token}")
    until(browser, lambda: browser.execute_script("return document.body.dataset.ready"), "load")
    assert "token=" not in browser.current_url  # kept out of the history and screenshots
    name = browser.find_element(By.ID, "operator")
    name.clear()
    name.send_keys("ann")
    browser.save_screenshot(str(tmp_path / "progress-pending.png"))
    # the driver's heartbeat, asked of the running controller
    until(browser, lambda: text(browser, "#drivers td.heard").endswith(" s ago"), "heartbeat")
    browser.find_element(By.CSS_SELECTOR, "button.approve[data-t='T0001']").click()
    until(browser, lambda: "approved T0001" in text(browser, "#msg"), "the approval's answer")
    ((payload,),) = db_rows(
        db, "SELECT payload FROM events WHERE kind = 'trial_approved' AND trial_id = 'T0001'"
    )
    assert json.loads(payload)["operator"] == "ann"
    wait_for(lambda: statuses(db).get("T0001") == "completed", 30, "T0001 to run")
    done_at = time.monotonic()
    # the new result reaches the page by the live stream, without a reload
    until(browser, lambda: text(browser, "#completed") == "1", "the result on the page", 2)
    shown_after = time.monotonic() - done_at
    assert shown_after < scaled(2), shown_after

    # a refused action explains itself; the database is unchanged
    before = decisions(db)
    browser.find_element(By.CSS_SELECTOR, "button.reject[data-t='T0002']").click()
    until(browser, lambda: "give a --reason" in text(browser, "#msg"), "the refusal")
    assert decisions(db) == before and statuses(db)["T0002"] == "proposed"
    browser.save_screenshot(str(tmp_path / "progress.png"))

    # pause, a suggestion (checked by the campaign: out of bounds is refused), resume
    browser.find_element(By.ID, "pause").click()
    until(browser, lambda: "dispatching paused" in text(browser, "#msg"), "the pause")
    until(browser, lambda: "PAUSED" in text(browser, "#state"), "the paused badge")
    for name, value in (("x1", "99"), ("x2", "1")):
        box = browser.find_element(By.CSS_SELECTOR, f"#suggest input[name='{name}']")
        box.clear()
        box.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#suggest button").click()
    until(browser, lambda: "outside the bounds" in text(browser, "#msg"), "the bad suggestion")
    box = browser.find_element(By.CSS_SELECTOR, "#suggest input[name='x1']")
    box.clear()
    box.send_keys("3.14")
    browser.find_element(By.CSS_SELECTOR, "#suggest button").click()
    until(browser, lambda: "suggested T0004" in text(browser, "#msg"), "the suggestion")
    browser.find_element(By.ID, "unpause").click()
    until(browser, lambda: "dispatching resumed" in text(browser, "#msg"), "the resume")
    ops = db_rows(
        db,
        "SELECT kind, json_extract(payload, '$.operator') FROM events WHERE kind IN "
        "('campaign_paused', 'campaign_unpaused') OR (kind = 'trial_proposed' AND "
        "json_extract(payload, '$.origin') = 'suggested') ORDER BY seq",
    )
    assert ops == [
        ("campaign_paused", "ann"),
        ("trial_proposed", "ann"),
        ("campaign_unpaused", "ann"),
    ]
    wait_for(lambda: statuses(db).get("T0004") == "completed", 30, "the suggestion to run")

    view(browser, "trials", tmp_path / "trials.png")
    row = text(browser, "tr[data-trial='T0001']")
    assert "completed" in row and "d1" in row
    view(browser, "results", tmp_path / "results.png")
    pts = browser.find_elements(By.CSS_SELECTOR, "#best path[data-points]")
    done = count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'")
    assert sum(int(p.get_attribute("data-points")) for p in pts) == done == 2


def _offline(tmp: Path, name: str, spec: Path, n: int, outcomes: Callable[..., Any]) -> Path:
    """A stopped campaign of ``n`` trials, through the Python API (no controller)."""
    from loopctl import Campaign

    db = tmp / name
    with Campaign.create(spec, db) as c:
        for _ in range(n):
            for t in c.ask(1):
                c.tell(t.id, outcomes(**t.parameters))
    return db


def test_two_objectives_show_their_front(tmp_path: Path, procs: Procs, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    from loopctl import Campaign

    data = yaml.safe_load(branin(tmp_path).read_text())
    data.pop("oracle")
    data["objectives"] = [{"name": "y", "goal": "minimize"}, {"name": "z", "goal": "minimize"}]
    data["strategy"] = {"method": "sobol"}
    spec = tmp_path / "two.yaml"
    spec.write_text(yaml.safe_dump(data))
    db = _offline(
        tmp_path, "two.db", spec, 16, lambda x1, x2: {"y": branin_fn(x1, x2), "z": (x1 - 2) ** 2}
    )
    with Campaign.open(db) as c:
        front = c.pareto()
    url, _ = dashboard(procs, db)
    browser.get(url + "#results")
    until(browser, lambda: browser.execute_script("return document.body.dataset.ready"), "load")
    shown = browser.find_element(By.ID, "front-points").get_attribute("data-points")
    assert int(shown) == len(front) >= 2
    assert browser.find_elements(By.CSS_SELECTOR, "#hv path")
    browser.save_screenshot(str(tmp_path / "pareto.png"))

    # the table is sorted, filtered and paged by the server
    ys = sorted(v for (v,) in db_rows(db, "SELECT value FROM observations WHERE metric = 'y'"))
    with urllib.request.urlopen(f"{url}api/trials?sort=y&desc=1&size=10&page=2") as r:
        page = json.loads(r.read())
    assert page["total"] == 16 and page["pages"] == 2
    assert [t["outcomes"]["y"] for t in page["trials"]] == ys[::-1][10:]
    browser.get(url + "#trials")
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "tr[data-trial]"), "the table")
    browser.find_element(By.ID, "f-q").send_keys("T0016")
    browser.find_element(By.CSS_SELECTOR, "#filter button:not([type])").click()
    until(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "tr[data-trial]")) == 1,
        "the filtered table",
    )


def test_why_chosen_and_read_only_beyond_loopback(
    tmp_path: Path, procs: Procs, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    spec = branin(tmp_path, strategy={"method": "botorch", "initial_trials": 4})
    db = _offline(tmp_path, "gp.db", spec, 6, lambda x1, x2: {"y": branin_fn(x1, x2)})
    chosen = db_rows(db, "SELECT trial_id FROM events WHERE kind = 'trial_proposed'")[-1][0]
    untouched = hashlib.sha256(db.read_bytes()).hexdigest()
    url, token = dashboard(procs, db, "--host", "0.0.0.0")
    assert token == ""  # read-only: no token printed, and actions refused with the reason
    url = url.replace("0.0.0.0", "127.0.0.1")
    code, reply = post(url, {"action": "pause", "operator": "ann"}, "anything")
    assert (
        code == 403
        and "read-only" in reply["error"]
        and "--allow-remote-actions" in (reply["error"])
    )
    browser.get(f"{url}#why/{chosen}")
    until(browser, lambda: browser.find_elements(By.ID, "importance"), "the model's story")
    until(
        browser,
        lambda: (
            "chosen by botorch" in text(browser, "#why") and "predicted" in text(browser, "#why")
        ),
        "the strategy, prediction and uncertainty",
    )
    labels = "#importance svg text:nth-of-type(odd)"  # a label, then its value, per input
    until(
        browser,
        lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, labels)] == ["x1", "x2"],
        "lengthscales named by parameter",
    )
    # the model's leave-one-out check: fitted in the dashboard's worker thread when the view
    # opened, drawn as predicted against observed with ±2 sd, and the database untouched
    until(browser, lambda: loo_points(browser) == 6, "the leave-one-out chart", 60)
    bars = browser.find_element(By.ID, "loo-bars").get_attribute("data-bars")
    assert bars == "6" and "of 6 observations lie within" in text(browser, "#loo")
    browser.execute_script("document.getElementById('loo').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "why-model-check.png"))
    assert hashlib.sha256(db.read_bytes()).hexdigest() == untouched
    with urllib.request.urlopen(url + "api/model-check", timeout=scaled(10)) as r:
        kept = json.loads(r.read())
    assert kept["state"] == "ready" and kept["completed"] == 6  # kept, not fitted again
    # a new result: the check is marked out of date until asked for again ("Update")
    csv = tmp_path / "more.csv"
    csv.write_text("x1,x2,y\n1,2,30\n")
    loopctl("import", str(db), str(csv))
    until(browser, lambda: "new results since" in text(browser, "#loo-state"), "stale", 10)
    assert loo_points(browser) == 6
    browser.find_element(By.ID, "loo-run").click()
    until(browser, lambda: loo_points(browser) == 7, "the check with the new result", 60)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(tmp_path / "why.png"))
    view(browser, "results", tmp_path / "best-so-far.png")
    assert browser.find_elements(By.CSS_SELECTOR, "#best rect.initial")
    assert (
        "read-only" in text(browser, "#controls")
        or not browser.find_element(By.ID, "controls").is_displayed()
    )
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'campaign_paused'") == 0


def test_three_objectives_have_a_front_and_a_growing_hypervolume(tmp_path: Path) -> None:
    """No browser: the data behind the front card, with a trial that every objective ranks
    below another (it must be off the front) and the rest mutually non-dominated."""
    from loopctl import Campaign
    from loopctl.dashboard.data import Campaign as Page

    spec = {
        "name": "three",
        "seed": 0,
        "space": [{"name": n, "type": "range", "bounds": [0, 1]} for n in "ab"],
        "objectives": [
            {"name": "f", "goal": "minimize"},
            {"name": "g", "goal": "minimize"},
            {"name": "h", "goal": "maximize"},
        ],
        "budget": {"trials": 10},
        "strategy": {"method": "sobol"},
    }
    db = tmp_path / "three.db"
    values = [(1, 2, 3), (2, 1, 3), (2, 2, 2), (0.5, 3, 1), (3, 3, 4)]  # (2, 2, 2): dominated
    with Campaign.create(spec, db) as c:
        for t, (f, g, h) in zip(c.ask(len(values)), values, strict=True):
            c.tell(t.id, {"f": f, "g": g, "h": h})
    front = Page(str(db)).series()["pareto"]
    assert sorted(front["on_front"]) == [0, 1, 3, 4]
    hv = front["hv"]
    assert hv[-1] > 0 and all(b >= a for a, b in itertools.pairwise(hv))
