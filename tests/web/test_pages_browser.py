"""A clerk's day in a real browser (Debian's chromium) on the simulated line's recorded day.

Log in, open the queue, set a downtime's reason, split a downtime, accept part of a held
count, correct scrap, confirm the order, export, correct again (after a supervisor reopens
it) and see the delta; a viewer is refused every change; a POST without the CSRF token is
refused; a reason with <script> is shown as text; the state bar is the stored intervals.
Screenshots of the main pages go to .cache/screenshots/ (linked from the README).
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from recorded_day import HELD_ID
from web_support import SHOTS, Site, log_in

pytestmark = pytest.mark.integration
ORDER = "WO-1001"


async def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def figure(page: Any, machine: str, name: str) -> int:
    text = await page.inner_text(f"section[data-machine='{machine}'] td[data-figure='{name}']")
    return int(text.replace("\u202f", "").removesuffix("pcs"))


async def submit(page: Any, form: Any) -> None:
    async with page.expect_navigation():
        await form.locator("button[type=submit]").click()


async def test_a_clerks_day(site: Site, browser: Any) -> None:
    page = await log_in(browser, site, "clara")
    await page.goto(site.url + "/?day=2026-12-07")
    await shot(page, "overview")

    # The queue first: the held count is there, linked to its order.
    # (The recorded day, not the default last week: the test must not age.)
    await page.goto(site.url + "/queue?day=2026-12-07")
    held_entry = page.locator(f"tr[data-key='held:{HELD_ID}']")
    await held_entry.wait_for()
    assert await held_entry.count() == 1
    assert "65\u202f000" in await held_entry.inner_text()
    await shot(page, "queue")
    await held_entry.locator(f"a[href='/orders/{ORDER}']").first.click()
    await page.wait_for_url(f"{site.url}/orders/{ORDER}")

    # Set a downtime's reason: the filler's first stop was a bottle jam.
    dt = await site.pool.fetchrow(
        "SELECT downtime_id, start_ts, end_ts FROM downtimes WHERE machine = 'filler-1'"
        " AND end_ts IS NOT NULL ORDER BY start_ts LIMIT 1"
    )
    row = page.locator(f"tr[data-downtime='{dt['downtime_id']}']")
    form = row.locator("form[action$='/recode']")
    await form.locator("select[name=code]").select_option("101")
    await form.locator("input[name=reason]").fill("operator log: jam at the infeed star")
    await submit(page, form)
    assert "Bottle jam [101]" in await row.locator("td.reason").inner_text()

    # Split it 2 s after its start (plant time in the form): two rows, one lineage.
    split_at = (dt["start_ts"] + (dt["end_ts"] - dt["start_ts"]) / 2).astimezone(site_zone())
    form = row.locator("form[action$='/split']")
    await form.locator("input[name=at]").fill(split_at.strftime("%Y-%m-%dT%H:%M:%S"))
    await form.locator("input[name=reason]").fill("two stops: jam, then starved")
    await submit(page, form)
    pieces = page.locator(f"tr[data-lineage='{dt['downtime_id']}']")
    assert await pieces.count() == 2

    # Accept 12 of the 65,000 held parts: good grows by exactly 12.
    good = await figure(page, "filler-1", "good")
    form = page.locator(f"tr[data-held='{HELD_ID}'] form")
    await form.locator("input[name=parts]").fill("12")
    await form.locator("input[name=reason]").fill("counted 12 bottles on the conveyor")
    await submit(page, form)
    assert await figure(page, "filler-1", "good") == good + 12
    assert "partly accepted" in await page.inner_text(f"tr[data-held='{HELD_ID}'] .decision")

    # Correct the scrap; the reason, with markup in it, is shown as text.
    form = page.locator("form[aria-label='correct counts of filler-1']")
    await form.locator("select[name=figure]").select_option("scrap")
    await form.locator("input[name=value]").fill("3")
    await form.locator("input[name=reason]").fill("<script>window.pwned=1</script> 2 broken")
    await submit(page, form)
    assert await figure(page, "filler-1", "scrap") == 3
    assert await page.evaluate("window.pwned") is None
    assert "<script>window.pwned=1</script> 2 broken" in await page.inner_text("table.history")

    # A missing reason is an error next to the form, and nothing is written.
    before = await site.pool.fetchval("SELECT count(*) FROM revisions")
    form = page.locator("form[aria-label='correct counts of filler-1']")
    await form.locator("input[name=value]").fill("4")
    await form.locator("input[name=reason]").evaluate("e => e.removeAttribute('required')")
    await form.locator("input[name=reason]").fill("   ")
    await submit(page, form)
    error = page.locator("form[aria-label='correct counts of filler-1'] .error")
    assert "reason is required" in await error.inner_text()
    assert await site.pool.fetchval("SELECT count(*) FROM revisions") == before
    await shot(page, "order")

    # Confirm the order on every machine (the held count is decided, so it may be).
    for machine in ("capper-1", "filler-1", "labeler-1", "packer-1"):
        form = page.locator(f"form[aria-label='confirm {machine}']")
        await submit(page, form)
        status = page.locator(f"section[data-machine='{machine}'] .status")
        assert await status.inner_text() == "confirmed"

    # Only a supervisor reopens: the clerk's button is disabled and the server says no.
    assert await page.locator("form[aria-label='reopen filler-1'] button").is_disabled()
    csrf = await page.get_attribute("header input[name=csrf]", "value")
    refused = await page.request.post(
        f"{site.url}/orders/{ORDER}/reopen",
        form={"csrf": csrf, "machine": "filler-1", "reason": "a clerk tries"},
    )
    assert refused.status == 403

    # Export: the preview lists four confirmations, the download records them.
    await page.goto(f"{site.url}/export?order={ORDER}")
    assert await page.locator("tr[data-record='confirmation'].new").count() == 4
    await shot(page, "export")
    async with page.expect_download() as info:
        await page.click("text=Export and download")
    first = await (await info.value).path()
    text = await asyncio.to_thread(Path(first).read_text, encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    filler = next(r for r in rows if r["operation"] == "filler-1")
    assert (filler["yield"], filler["scrap"], filler["final"]) == (str(good + 12), "3", "X")

    # A supervisor reopens the filler, the clerk corrects again: the export is the delta.
    sup = await log_in(browser, site, "sam")
    await sup.goto(f"{site.url}/orders/{ORDER}")
    form = sup.locator("form[aria-label='reopen filler-1']")
    await form.locator("input[name=reason]").fill("2 more scrap found at the packer")
    await submit(sup, form)
    await page.goto(f"{site.url}/orders/{ORDER}")
    form = page.locator("form[aria-label='correct counts of filler-1']")
    await form.locator("select[name=figure]").select_option("scrap")
    await form.locator("input[name=delta]").fill("2")
    await form.locator("input[name=reason]").fill("2 more found at the packer")
    await submit(page, form)
    await submit(page, page.locator("form[aria-label='confirm filler-1']"))
    await page.goto(f"{site.url}/export?order={ORDER}")
    delta = page.locator("tr[data-record='delta'].new")
    assert await delta.count() == 1
    assert await delta.locator("td[data-figure='scrap']").inner_text() == "2PCE"
    assert await delta.locator("td[data-figure='yield']").inner_text() == "0PCE"


def site_zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Berlin")


async def test_a_viewer_is_refused_every_change(site: Site, browser: Any) -> None:
    page = await log_in(browser, site, "vic")
    await page.goto(f"{site.url}/orders/{ORDER}")
    assert await page.locator("main form[method=post]").count() == 0  # no forms to use
    csrf = await page.get_attribute("header input[name=csrf]", "value")
    for action in ("adjust", "confirm", "held", "recode", "split", "merge", "move", "reopen"):
        response = await page.request.post(
            f"{site.url}/orders/{ORDER}/{action}",
            form={
                "csrf": csrf,
                "machine": "filler-1",
                "figure": "scrap",
                "value": "9",
                "reason": "viewer",
                "held_id": HELD_ID,
                "downtime_id": "x",
                "code": "101",
                "at": "2026-12-07T02:28:40",
                "with_id": "y",
                "to_order": "WO-2",
                "parts": "1",
            },
        )
        assert response.status == 403, action
    response = await page.request.post(
        f"{site.url}/export/download", form={"csrf": csrf, "order": ORDER, "format": "csv"}
    )
    assert response.status == 403
    assert await site.pool.fetchval("SELECT count(*) FROM revisions") == 0


async def test_a_post_without_the_csrf_token_is_refused(site: Site, browser: Any) -> None:
    page = await log_in(browser, site, "clara")
    form = {"machine": "filler-1", "figure": "scrap", "value": "9", "reason": "forged"}
    response = await page.request.post(f"{site.url}/orders/{ORDER}/adjust", form=form)
    assert response.status == 403
    response = await page.request.post(
        f"{site.url}/orders/{ORDER}/adjust", form={**form, "csrf": "not-the-token"}
    )
    assert response.status == 403
    assert await site.pool.fetchval("SELECT count(*) FROM revisions") == 0


async def test_the_state_bar_is_the_stored_intervals(site: Site, browser: Any) -> None:
    page = await log_in(browser, site, "vic")
    await page.goto(f"{site.url}/orders/{ORDER}")
    op = await site.pool.fetchrow(
        "SELECT started_at, ended_at FROM work_orders WHERE order_id = $1 AND machine = $2",
        ORDER,
        "filler-1",
    )
    stored = await site.pool.fetch(
        "SELECT bucket, greatest(start_ts, $1) AS s, least(coalesce(end_ts, $2), $2) AS e"
        " FROM state_intervals WHERE machine = 'filler-1' AND start_ts < $2"
        " AND (end_ts IS NULL OR end_ts > $1) ORDER BY start_ts",
        op["started_at"],
        op["ended_at"],
    )
    rects = page.locator("section[data-machine='filler-1'] svg.timeline rect.seg")
    shown = [
        (
            await r.get_attribute("data-bucket"),
            datetime.fromisoformat(await r.get_attribute("data-start")),
            datetime.fromisoformat(await r.get_attribute("data-end")),
        )
        for r in await rects.all()
    ]
    assert shown == [(r["bucket"], r["s"], r["e"]) for r in stored if r["e"] > r["s"]]
    assert len(shown) >= 3  # the filler ran, starved and ran again


async def test_active_downtimes_and_held_counts_appear_without_a_reload(
    site: Site, browser: Any
) -> None:
    from gateway.events import DowntimeData, Draft, HeldCountData, uuid7
    from gateway.store import write_batch
    from gateway.testing import received

    page = await log_in(browser, site, "vic")
    strip = page.locator("#live-held")
    await strip.filter(has_text="1 held count(s) waiting (65000 parts)").wait_for()
    start = datetime.now().astimezone()
    drafts = [
        Draft(
            "downtime.started",
            start,
            "packaging",
            "line-1",
            "packer-1",
            DowntimeData(downtime_id="packer-1-live", start=start),
            order=ORDER,
        ),
        Draft(
            "count.held",
            start,
            "packaging",
            "line-1",
            "packer-1",
            HeldCountData(
                held_id="packer-1-live-held",
                counter="good",
                role="good_count",
                old_raw=5,
                new_raw=505,
                claimed=500,
                plausible_max=3,
                reason="spike",
                start=start,
                end=start,
            ),
            order=ORDER,
        ),
    ]
    events = [
        d.seal(event_id=uuid7(), seq=10_000 + i, gateway="demo-gw", site="demo")
        for i, d in enumerate(drafts)
    ]
    async with site.pool.acquire() as conn:
        await write_batch(conn, [received(e) for e in events], [])
    await strip.filter(has_text="2 held count(s) waiting (65500 parts)").wait_for()
    assert "packer-1 since" in await page.inner_text("#live-downtimes")
    assert page.url.endswith("/")  # the same page, never reloaded


async def test_login_is_throttled_and_logout_ends_the_session(site: Site, browser: Any) -> None:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    page.set_default_timeout(10_000)
    for attempt in range(5):
        await page.goto(site.url + "/login")
        await page.fill("#username", "clara")
        await page.fill("#password", f"wrong-{attempt}")
        await page.click("button[type=submit]")
        assert "Wrong user name or password." in await page.inner_text(".error")
    await page.goto(site.url + "/login")
    await page.fill("#username", "clara")
    await page.fill("#password", "clerk-pass-123")  # right, but too soon
    await page.click("button[type=submit]")
    assert "Too many failed attempts" in await page.inner_text(".error")

    page = await log_in(browser, site, "sam")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["mesgw_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    await page.click("text=Log out")
    await page.wait_for_url(site.url + "/login")
    await page.goto(site.url + "/queue")
    assert page.url.startswith(site.url + "/login?next=")
    assert await site.pool.fetchval("SELECT count(*) FROM web_sessions WHERE username = 'sam'") == 0


async def test_keyboard_only_login_and_readable_on_a_tablet(site: Site, browser: Any) -> None:
    ctx = await browser.new_context(viewport={"width": 768, "height": 1024}, has_touch=True)
    page = await ctx.new_page()
    page.set_default_timeout(10_000)
    await page.goto(site.url + f"/orders/{ORDER}")
    for _ in range(4):  # the skip link, then the form's fields, by Tab alone
        if await page.evaluate("document.activeElement.id") == "username":
            break
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "username"
    await page.keyboard.type("clara")
    await page.keyboard.press("Tab")
    await page.keyboard.type("clerk-pass-123")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{site.url}/orders/{ORDER}")  # back where the clerk was going
    align = await page.eval_on_selector(
        "td[data-figure='good']", "e => getComputedStyle(e).textAlign"
    )
    assert align == "right"
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 768 + 1  # nothing wider than the tablet: wide tables scroll in their box
    await shot(page, "order-tablet")
