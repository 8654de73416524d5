"""End-to-end test of the search page: a real uvicorn server on loopback and headless Debian chromium.

Needs the apt package ``chromium`` (at /usr/bin/chromium) and the pip package ``playwright`` (no browser
download). Without them the test skips locally and fails on CI (``CI`` set), so CI cannot pass by skipping.
Set ``RELSPACE_SCREENSHOT=path.png`` to save a screenshot of the page with results.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUERY = "a red apple"
K = 12


def _require_browser() -> None:
    """Skip (locally) or fail (on CI) when the browser or Playwright is missing, saying which."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} is absent (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is absent (pip install playwright)")
    if missing:
        reason = "browser test needs chromium and playwright: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _browser_available() -> None:
    """Checked before any other fixture, so a machine without chromium skips without building the index."""
    _require_browser()


@pytest.fixture(scope="module")
def live_server(small_index: Path) -> Iterator[str]:
    """``relspace serve`` in a background thread: the small index loaded from disk, uvicorn on a free port."""
    import uvicorn

    from pipeline import Retriever
    from pipeline.serve import create_app
    from pipeline.serve.app import warm_up

    retriever = Retriever.load(small_index)
    warm_up(retriever)
    # Binding the socket here and handing it to uvicorn avoids a race for the free port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(retriever), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _thumbnails_loaded(page, selector: str) -> None:
    page.wait_for_function(
        """sel => {
            const imgs = [...document.querySelectorAll(sel)];
            return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=selector,
        timeout=15_000,
    )


@pytest.mark.slow
def test_search_page_end_to_end(live_server: str, small_retriever, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    ids = small_retriever.items["image"].column("id").to_pylist()
    query_png = small_retriever.thumbnail(ids[0])
    assert query_png is not None
    png_path = tmp_path / "query.png"
    png_path.write_bytes(query_png)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            # Only the page's own origin may be contacted: no CDN, no fonts, no analytics.
            own = (live_server, "blob:" + live_server)
            page.on("request", lambda r: None if r.url.startswith(own) else problems.append(f"request: {r.url}"))
            page.goto(live_server + "/")

            # /info feeds the languages and the attribution.
            expect(page.locator("#lang option")).to_have_count(2)
            attribution = page.locator("#attribution")
            expect(attribution).to_have_text(
                "All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0"
            )
            expect(attribution.locator("a")).to_have_count(2)
            assert attribution.locator("a").nth(1).get_attribute("href") == "https://creativecommons.org/licenses/by-sa/4.0/"
            expect(page.locator("#status")).to_have_attribute("aria-live", "polite")

            # Text -> images: type, press Enter, wait for the thumbnails to load.
            page.locator("#k").fill(str(K))
            page.locator("#q").fill(QUERY)
            page.locator("#q").press("Enter")
            hits = page.locator("#results li.image")
            expect(hits).to_have_count(K)
            _thumbnails_loaded(page, "#results img.thumb")
            expected = [h.id for h in small_retriever.search(text=QUERY, k=K)]
            assert hits.evaluate_all("els => els.map(e => e.dataset.id)") == expected
            alts = page.locator("#results img.thumb").evaluate_all("els => els.map(e => e.alt)")
            assert all(alts), alts
            expect(page.locator("#status")).to_contain_text(f"{K} images for “{QUERY}”")
            assert "q=a+red+apple" in page.url  # the query is kept in the URL, so results can be shared
            if os.environ.get("RELSPACE_SCREENSHOT"):
                page.screenshot(path=os.environ["RELSPACE_SCREENSHOT"], full_page=True)

            # Image -> captions by keyboard: the mode radios take arrow keys, then the file picker.
            page.locator("#mode-t2i").focus()
            page.keyboard.press("ArrowRight")
            expect(page.locator("#mode-i2t")).to_be_checked()
            expect(page.locator("#image-query")).to_be_visible()
            expect(page.locator("#text-query")).to_be_hidden()
            page.locator("#file").set_input_files(str(png_path))
            expect(page.locator("#preview")).to_be_visible()
            captions = page.locator("#results li.text .caption")
            expect(captions).to_have_count(K)
            expected_caps = [h.caption for h in small_retriever.search(image=query_png, k=K)]
            assert captions.all_inner_texts() == expected_caps
            _thumbnails_loaded(page, "#results img.thumb")

            # Caption language from the selector: only Spanish captions.
            page.locator("#result-lang").select_option("es")
            page.wait_for_function(
                """k => {
                    const langs = [...document.querySelectorAll('#results li.text .lang')].map(e => e.textContent);
                    return langs.length === k && langs.every(l => l === 'es');
                }""",
                arg=K,
            )

            # Image -> images by drag and drop onto the drop zone.
            page.locator("label[for=mode-i2i]").click()
            expect(page.locator("#mode-i2i")).to_be_checked()
            data = page.evaluate_handle(
                """b64 => {
                    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                    const dt = new DataTransfer();
                    dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
                    return dt;
                }""",
                base64.b64encode(query_png).decode(),
            )
            page.locator("#drop-zone").dispatch_event("drop", {"dataTransfer": data})
            expected_ids = [h.id for h in small_retriever.search(image=query_png, k=K, target="image")]
            expect(page.locator("#results li.image")).to_have_count(K)
            page.wait_for_function(
                "ids => JSON.stringify([...document.querySelectorAll('#results li')].map(e => e.dataset.id)) "
                "=== JSON.stringify(ids)",
                arg=expected_ids,
            )
            _thumbnails_loaded(page, "#results img.thumb")

            assert problems == [], problems

            # A server error is shown, not swallowed: an over-long query (the browser logs the 422).
            page.locator("label[for=mode-t2i]").click()
            page.locator("#q").evaluate("(el, n) => { el.removeAttribute('maxlength'); el.value = 'a'.repeat(n); }", 1001)
            page.locator("#q").press("Enter")
            expect(page.locator("#error")).to_contain_text("limit is 1000")
            assert all("422" in m for m in problems), problems
        finally:
            browser.close()
