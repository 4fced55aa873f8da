"""The leaderboard's HTML page in headless Chromium: the table rows render and clicking a header sorts them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mtl_bench.leaderboard import store
from mtl_bench.leaderboard.render import html_page


def chromium() -> str:
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found is None:
        message = "headless Chromium not found (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + " (in CI this is a failure: .ci/run installs it)", pytrace=False)
        pytest.skip(message)
    return found


def browse(page: Path, *args: str) -> str:
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def names_in_order(dom: str) -> list[str]:
    body = dom[dom.index("<tbody>"):dom.index("</tbody>")]
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row)[1] for row in body.split("<tr>")[1:]]


def test_html_page_renders_its_rows_and_sorts_by_clicked_column(board, submissions, tmp_path):
    for cell in ("single-task", "hard"):
        store.submit(submissions[cell], "smoke")
    spec, frame = store.show("smoke")
    page = tmp_path / "board.html"
    page.write_text(html_page(spec, frame))

    dom = browse(page, "--dump-dom")  # the DOM after the page's scripts ran
    assert names_in_order(dom) == list(frame["name"])  # ranked order, one row per submission

    params = dict(zip(frame["name"], frame["params"], strict=True))
    column = list(re.findall(r"<th[^>]*>([^<]*)</th>", dom)).index("params")
    clicked = tmp_path / "clicked.html"  # the same page, with a click on the params header after load
    clicked.write_text(page.read_text().replace(
        "</body>", f"<script>document.querySelectorAll('#board th')[{column}].click();</script></body>"))
    assert names_in_order(browse(clicked, "--dump-dom")) == sorted(params, key=params.get)  # ascending by value

    shot = tmp_path / "board.png"
    browse(page, f"--screenshot={shot}", "--window-size=1400,500")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
