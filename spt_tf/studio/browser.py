"""Driving the studio's page from Python with playwright (screenshots and the benchmark).

Chromium is the system's (Debian's ``chromium`` package at ``/usr/bin/chromium``
by default, ``SPT_CHROMIUM`` overrides); playwright only drives it, so no
browser download is needed. Photo pixels ``(y, x)`` map to the page through the
canvas's ``data-scale`` (pixel centres), as the page draws them.
"""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("SPT_CHROMIUM", "/usr/bin/chromium")


def launch(playwright, executable: str | None = None):
    """Headless Chromium; a clear error when it is not installed."""
    path = executable or CHROMIUM
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: Chromium not found; install Debian's 'chromium' package "
                                "(apt-get install -y chromium) or set SPT_CHROMIUM")  # fmt: skip
    return playwright.chromium.launch(executable_path=path, headless=True)


def open_page(browser, url: str, width: int = 1400, height: int = 900):
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    return page


def result_id(page) -> str | None:
    return page.get_attribute("#result-image", "data-result-id")


def wait_result(page, old: str | None, timeout_ms: int = 60000) -> str:
    """Waits for a result other than ``old`` on screen and no render left to come (the page idle);
    raises with the page's message on an error."""
    page.wait_for_function(
        """old => { const i = document.querySelector('#result-image');
                    const m = document.querySelector('#message');
                    const shown = i.dataset.resultId && i.dataset.resultId !== old && i.complete && i.naturalWidth > 0;
                    return window.studio.idle() && (shown || (!m.hidden && m.className === 'error')); }""",
        arg=old, timeout=timeout_ms,
    )  # fmt: skip
    msg = page.locator("#message")
    if msg.is_visible() and msg.get_attribute("class") == "error":
        raise RuntimeError(f"the studio reported: {msg.text_content()}")
    return result_id(page)


def canvas_point(page, selector: str, yx) -> tuple[float, float]:
    """Page coordinates of photo pixel ``(y, x)`` on one of the page's canvases."""
    return tuple(page.evaluate(
        """([sel, y, x]) => { const c = document.querySelector(sel); const r = c.getBoundingClientRect();
                             const s = Number(c.dataset.scale);
                             return [r.left + (x + 0.5) * s * r.width / c.width,
                                     r.top + (y + 0.5) * s * r.height / c.height]; }""",
        [selector, float(yx[0]), float(yx[1])],
    ))  # fmt: skip


def drag(page, selector: str, start_yx, end_yx, steps: int = 5) -> None:
    """Presses at photo pixel ``start_yx`` of a canvas, moves to ``end_yx``, releases."""
    x0, y0 = canvas_point(page, selector, start_yx)
    x1, y1 = canvas_point(page, selector, end_yx)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up()


def target(page, joint: int) -> list[float]:
    """The target pose's joint ``(y, x)`` as the page holds it."""
    return page.evaluate("j => window.studio.target[j]", joint)


def load_dataset(page, slot: str, name: str, wait: bool = True) -> str | None:
    """Loads a dataset test image into ``slot`` (``source`` or ``second``); a source re-renders."""
    old = result_id(page)
    page.select_option(f"#slot-{slot} .dataset-select", name)
    page.click(f"#slot-{slot} .load-dataset")
    if slot == "source" and wait:
        return wait_result(page, old)
    page.wait_for_function(f"() => window.studio.people.{slot} && window.studio.people.{slot}.name === {name!r}")
    return old
