"""The page at ``/`` in a real browser: Debian's chromium driven by playwright (pointed at
/usr/bin/chromium, which ``scripts/setup`` installs; no browser download), against a real
``avid serve`` on a temporary data directory, with media files written by PyAV.

Marked ``browser``: left out of the default run, ``pytest -m browser`` runs them. Screenshots
go to ``$AVID_SCREENSHOT_DIR`` (default: the test's temporary directory)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.services.conftest import Media
from tests.services.server_process import ServerProcess

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
KEY = "page-key"
READ_KEY = "page-read-key"


def screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("AVID_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run ./scripts/setup (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # A fake microphone (a beep) stands in for a real one; its prompt is accepted.
            args=[
                "--no-sandbox",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(
    checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("page-server")
    # Files over 2.5 s are embedded as background jobs (the page follows them); search
    # queries are limited to 2.5 s too.
    env = {"AVID_API_KEY": KEY, "AVID_READ_API_KEY": READ_KEY, "AVID_SYNC_MAX_SECONDS": "2.5"}
    process = ServerProcess(checkpoint_dir, root / "data", root / "serve.log", **env).start()
    yield process
    process.stop()


def open_page(browser: Browser, server: ServerProcess, key: str) -> Page:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
    page.goto(server.url + "/")
    expect(page.locator("#key-dialog")).to_be_visible()  # the API said 401: a key is asked
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#status")).to_contain_text("Model avid-tiny")
    return page


def api(server: ServerProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, server.url + path, headers={"X-API-Key": KEY}, timeout=60, **kwargs
    )


def test_upload_browse_search_play_at_the_window_and_delete(
    browser: Browser, server: ServerProcess, media: Media, tmp_path: Path
) -> None:
    page = open_page(browser, server, KEY)
    media_requests: list[tuple[str, str]] = []  # (url, Range header) of the media's requests
    page.on(
        "request",
        lambda r: (
            media_requests.append((r.url, r.headers.get("range", "")))
            if "/media?" in r.url
            else None
        ),
    )
    expect(page.locator("#status")).to_contain_text("ready")
    # Upload: three videos and a sound, with metadata, each with its progress bar; they
    # last 3 s, so each is a job the page follows until it is done.
    files = [str(p) for p in (*media.videos, media.wav)]
    page.get_by_label("Files to store").set_input_files(files)
    page.get_by_label("Metadata").fill('{"set": "page"}')
    page.get_by_role("button", name="Upload").click()
    done = page.locator("#uploads li[data-state=done]")
    expect(done).to_have_count(4, timeout=60_000)
    expect(page.locator("#uploads progress")).to_have_count(4)
    expect(page.locator("#uploads")).to_contain_text("video_0.mp4: stored as")
    # Browse: the items with their names, a poster for each video and a waveform for the
    # sound (decoded JPEGs).
    cards = page.locator("#items li.item")
    expect(cards).to_have_count(4)
    expect(page.locator("#items")).to_contain_text("video_1.mp4")
    expect(page.locator("#items")).to_contain_text("tone.wav")
    posters = page.locator("#items img")
    expect(posters).to_have_count(4)
    expect(page.get_by_role("img", name="The waveform of tone.wav")).to_be_visible()
    for i in range(4):
        posters.nth(i).scroll_into_view_if_needed()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=posters.nth(i).element_handle()
        )
    # Search by an uploaded sound (short.mp4's, 2 s): the grid of the three videos, each
    # playing from its best window's start.
    page.get_by_label("Query file").set_input_files(str(media.short_video))
    page.get_by_label("videos that fit the file's sound").check()
    page.get_by_role("button", name="Search", exact=True).click()
    results = page.locator("#results li.result")
    expect(results).to_have_count(3)
    expected = api(
        server,
        "POST",
        "/search",
        files={"file": ("short.mp4", media.short_video.read_bytes())},
        data={"target": "video", "k": "8"},
    ).json()["results"]
    assert [r["id"] for r in expected] == results.evaluate_all(
        "cards => cards.map(c => c.dataset.itemId)"
    )
    # the seek is checked for real: some best window does not start at 0 (fixed seeds)
    assert any(hit["start"] > 0 for hit in expected), expected
    for i, hit in enumerate(expected):
        card = results.nth(i)
        expect(card).to_contain_text(f"score {hit['score']:.3f}")
        expect(card).to_contain_text(f"window {hit['start']:.1f} s")
        expect(card).to_contain_text('"set": "page"')
        video = card.locator("video")
        handle = video.element_handle()
        page.wait_for_function("v => v.readyState >= 2 && !v.seeking", arg=handle, timeout=20_000)
        state = video.evaluate(
            "v => ({ready: v.readyState, time: v.currentTime, duration: v.duration,"
            " error: v.error && v.error.message})"
        )
        assert state["error"] is None
        assert state["duration"] == pytest.approx(3.0, abs=0.2)
        assert state["time"] == pytest.approx(hit["start"], abs=0.1), state
        # With a key the player streams a signed URL (no header): not a blob in memory.
        src = video.get_attribute("src") or ""
        assert f"/items/{hit['id']}/media?token=" in src, src
    # The browser asked the signed URLs for byte ranges, and the service answered them.
    assert any(r.startswith("bytes=") for _, r in media_requests), media_requests
    signed = next(url for url, _ in media_requests)
    ranged = httpx.get(signed, headers={"Range": "bytes=0-99"}, timeout=30)  # no key
    assert (ranged.status_code, len(ranged.content)) == (206, 100)
    page.locator("#search").screenshot(path=str(screenshot_path(tmp_path, "page-search.png")))
    page.screenshot(path=str(screenshot_path(tmp_path, "page-full.png")), full_page=True)
    # The other way: a video's pictures find sounds (audio items and video soundtracks).
    page.get_by_label("Query file").set_input_files(str(media.short_video))
    page.get_by_label("sounds that fit the file's pictures").check()
    page.get_by_role("button", name="Search", exact=True).click()
    expect(results).to_have_count(4)
    expect(page.locator("#results audio")).to_have_count(1)
    page.get_by_label("Sounds from").select_option(label="sound files only")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(results).to_have_count(1)
    expect(results).to_contain_text("tone.wav")
    # Delete the sound from the browse grid.
    wav_card = cards.filter(has_text="tone.wav")
    wav_card.get_by_role("button", name="Delete tone.wav").click()
    expect(cards).to_have_count(3)
    assert api(server, "GET", "/items").json()["total"] == 3
    page.close()


def test_errors_are_shown_and_a_read_only_key_cannot_upload(
    browser: Browser, server: ServerProcess, media: Media, tmp_path: Path
) -> None:
    page = open_page(browser, server, READ_KEY)
    expect(page.locator("#status")).to_contain_text("read-only key")
    expect(page.locator("#upload")).to_be_hidden()
    expect(page.locator("#items .delete")).to_have_count(0)
    # A file that is not media: the API's 422 is shown with its code and message.
    page.get_by_label("Query file").set_input_files(str(media.text_file))
    page.get_by_role("button", name="Search", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("422 unreadable: notes.txt")
    page.screenshot(path=str(screenshot_path(tmp_path, "page-error.png")))
    page.get_by_label("Query file").set_input_files(str(media.wav))  # 3 s: over 2.5 s
    page.get_by_role("button", name="Search", exact=True).click()
    expect(alert).to_contain_text("413 too_long: tone.wav: a search query lasts at most 2.5 s")
    # A wrong key: asked again, with the service's reason.
    page.get_by_role("button", name="API key…").click()
    page.get_by_label("Key", exact=True).fill("wrong")
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-dialog")).to_contain_text("invalid API key")
    stored = page.evaluate("() => sessionStorage.getItem('avid-api-key')")
    assert json.dumps(stored) == '"wrong"'
    page.close()


def test_without_a_key_videos_stream_with_range_and_a_recording_searches(
    browser: Browser, checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    """No key: the page plays the media URL itself (the browser asks for byte ranges) and
    the microphone (chromium's fake one) records a query."""
    server = ServerProcess(checkpoint_dir, tmp_path / "data", tmp_path / "serve.log").start()
    try:
        for path in media.videos:
            with path.open("rb") as handle:
                stored = httpx.post(
                    server.url + "/embed/video", files={"file": (path.name, handle)}, timeout=60
                )
            assert stored.status_code == 200, stored.text
        page = browser.new_page()
        ranges: list[str] = []
        page.on(
            "request",
            lambda r: ranges.append(r.headers.get("range", "")) if "/media" in r.url else None,
        )
        page.goto(server.url + "/")
        expect(page.locator("#status")).to_contain_text("3 items")
        expect(page.locator("#key-dialog")).to_be_hidden()
        page.get_by_role("button", name="Record 5 s from the microphone").click()
        expect(page.locator("#query-name")).to_contain_text("recording.webm", timeout=15_000)
        page.get_by_role("button", name="Search", exact=True).click()
        results = page.locator("#results li.result")
        expect(results).to_have_count(3, timeout=30_000)
        for i in range(3):
            video = results.nth(i).locator("video")
            page.wait_for_function(
                "v => v.readyState >= 2 && !v.seeking", arg=video.element_handle()
            )
            src, start, time = video.evaluate(
                "v => [v.getAttribute('src'), Number(v.dataset.start), v.currentTime]"
            )
            assert src.startswith("/items/")
            assert "/media#t=" in src
            assert time == pytest.approx(start, abs=0.1)
        assert any(r.startswith("bytes=") for r in ranges), ranges
        page.close()
    finally:
        server.stop()
