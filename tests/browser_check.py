"""The built book in a real headless browser, offline: served by a static file server on 127.0.0.1, with
every other host name unresolvable.

- "Your GPT in the browser" must fill #browser-sample with a sample made by gpt.js.
- Chapter 7 must load nothing from another host (no CDN: its widget manager is shipped with the book)
  and must draw its saved widgets: the sampler panel with the sample the notebook saved, and the
  training progress bar.
- Code fits: at a 1280 px window, no code block of a chapter whose lines are at most 88 characters
  scrolls sideways, 88 characters fit every code block, and no output block scrolls sideways (long
  output lines wrap). Measured in the page (scrollWidth against clientWidth) by a script that this
  check's server adds to the pages it serves; the built files are not changed.
- No file of the built book is over 2 MB.

Run: python tests/browser_check.py [--build] [--screenshot page.png]
     (needs Chromium: `apt-get install -y chromium` on Debian; not run by pytest)
"""

import argparse
import functools
import html
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
PAGE = "browser.html"
WIDGET_PAGE = "07_train_gpt.html"
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
WINDOW = "--window-size=1280,900"  # the width a laptop's browser window has
CODE_WIDTH = 88  # the longest code line the house style allows
MEASURE = "measure"  # a query that makes the server add REPORT_SCRIPT to a page
# Written into #page-report once the page has loaded: every <pre> of the article that shows (its longest
# line, scrollWidth and clientWidth, and the width that 88 characters take in its font against the room
# inside its padding), and every resource the page asked for (the browser's resource timing, and the
# src/href of the scripts, styles, images and frames in the final DOM, those added by scripts too).
REPORT_SCRIPT = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const rows = [];
  for (const pre of document.querySelectorAll("article pre")) {
    if (!pre.offsetParent) continue;
    const longest = Math.max(...pre.textContent.split("\\n").map(l => [...l].length));
    const probe = document.createElement("span");
    probe.style.whiteSpace = "pre";
    probe.textContent = "x".repeat(%d);
    pre.appendChild(probe);
    const chars = probe.getBoundingClientRect().width;
    probe.remove();
    const cs = getComputedStyle(pre);
    const room = pre.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    rows.push({output: !!pre.closest(".cell_output"), longest, scroll: pre.scrollWidth,
               client: pre.clientWidth, room, chars});
  }
  const resources = performance.getEntriesByType("resource").map(e => e.name);
  for (const e of document.querySelectorAll("script[src], link[href], img[src], iframe[src]")) {
    if (e.tagName !== "LINK" || /stylesheet|preload|icon/.test(e.rel)) resources.push(e.src || e.href);
  }
  const out = document.createElement("pre");
  out.id = "page-report";
  out.textContent = JSON.stringify({width: window.innerWidth, rows, resources});
  document.body.appendChild(out);
}, 500));
</script>""" % CODE_WIDTH
MAX_BYTES = 2 * 1024 * 1024  # the most a file shipped with the book may weigh
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless, no GPU, no sandbox (containers run as root), and every host name but the local server's
# fails to resolve: the page has to work offline.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


class ElementText(HTMLParser):
    """The text inside the element with a given id (the DOM that --dump-dom prints)."""

    def __init__(self, element_id: str):
        super().__init__()
        self.element_id, self.depth, self.text, self.found = element_id, 0, [], False

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == self.element_id:
            self.depth, self.found = 1, True

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)


def element_text(dom: str, element_id: str) -> str | None:
    """The text of the element ``element_id`` in ``dom``, or None when there is no such element."""
    parser = ElementText(element_id)
    parser.feed(dom)
    return "".join(parser.text) if parser.found else None


class BookHandler(SimpleHTTPRequestHandler):
    """Serves the built book; a page asked for with ``?measure`` gets REPORT_SCRIPT before </body>."""

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if query != MEASURE:
            return super().do_GET()
        page = (HTML / path.lstrip("/")).read_text().replace("</body>", REPORT_SCRIPT + "</body>")
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def chromium(browser: str, url: str, *extra: str, budget_ms: int = 30000) -> tuple[str, str]:
    """The DOM of ``url`` after ``budget_ms`` of virtual time, and the browser's log (console
    messages and failed loads)."""
    run = subprocess.run([browser, *FLAGS, f"--virtual-time-budget={budget_ms}", "--enable-logging=stderr",
                          "--v=0", *extra, "--dump-dom", url], capture_output=True, text=True, timeout=300)
    return run.stdout, run.stderr


def page_report(browser: str, url: str, *extra: str, budget_ms: int) -> tuple[str, dict | None]:
    """The DOM of ``url?measure`` and what REPORT_SCRIPT wrote into it (None: the script did not run)."""
    dom, _ = chromium(browser, f"{url}?{MEASURE}", *extra, budget_ms=budget_ms)
    match = re.search(r'<pre id="page-report"[^>]*>(.*?)</pre>', dom, flags=re.S)
    return dom, json.loads(html.unescape(match.group(1))) if match else None


def saved_sample(notebook: Path) -> str:
    """The sample that chapter 7's sampler panel saved: the text of its widget state's <pre>."""
    import nbformat  # noqa: PLC0415 (the check's only use of it)

    nb = nbformat.read(notebook, as_version=4)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    for model in state.values():
        value = str(model["state"].get("value", ""))
        if model["model_name"] == "HTMLModel" and value.startswith("<pre"):
            return html.unescape(re.sub(r"<[^>]+>", "", value))
    raise SystemExit(f"{notebook.name} saved no sampler panel: re-execute it (docs/layout.md: Re-running a notebook)")


def check_widget_page(browser: str, base: str, budget_ms: int) -> list[str]:
    """Chapter 7 offline: no resource from another host, and its saved widgets drawn."""
    failures = []
    page = (HTML / WIDGET_PAGE).read_text()
    external = sorted(set(re.findall(r'<(?:script|link|img|iframe)\b[^>]*?(?:src|href)="((?:https?:)?//[^"]+)"',
                                     page)))
    if external:
        failures.append(f"{WIDGET_PAGE} loads from other hosts: " + ", ".join(external))
    dom, report = page_report(browser, f"{base}/{WIDGET_PAGE}", budget_ms=budget_ms)
    if report is None:
        return failures + [f"{WIDGET_PAGE}: the reporting script wrote no report"]
    elsewhere = sorted({u for u in report["resources"] if not u.startswith(base + "/")})
    print(f"{WIDGET_PAGE}: asked for {len(set(report['resources']))} resources, "
          f"{len(elsewhere)} from another host")
    if elsewhere:
        failures.append(f"{WIDGET_PAGE} asked other hosts for: " + ", ".join(elsewhere[:5]))
    sample = saved_sample(ROOT / "book" / "07_train_gpt.ipynb")
    panels = re.findall(r'<div class="widget-html-content">(.*?)</div>', dom, flags=re.S)
    texts = [html.unescape(re.sub(r"<[^>]+>", "", p)) for p in panels]
    print(f"{WIDGET_PAGE}: {len(panels)} HTML widgets drawn, "
          f"{dom.count('widget-hprogress')} progress bar(s), {dom.count('widget-button')} button(s)")
    if not any(sample.strip() and sample.strip() in t for t in texts):
        failures.append(f"{WIDGET_PAGE} does not show its saved sample ({sample[:30]!r}...): widgets not drawn")
    if "widget-hprogress" not in dom:
        failures.append(f"{WIDGET_PAGE} does not draw its training progress bar")
    return failures


def check_code_fits(browser: str, base: str, budget_ms: int) -> list[str]:
    """Every chapter at 1280 px: 88 characters fit each code block; none scrolls sideways."""
    failures = []
    for chapter in CHAPTERS:
        _, report = page_report(browser, f"{base}/{chapter}.html", WINDOW, budget_ms=budget_ms)
        if report is None:
            failures.append(f"{chapter}: the measuring script wrote no report")
            continue
        rows = report["rows"]
        code = [r for r in rows if not r["output"]]
        long_lines = [r["longest"] for r in code if r["longest"] > CODE_WIDTH]
        scrolls = [r for r in rows if r["scroll"] > r["client"] and (r["output"] or r["longest"] <= CODE_WIDTH)]
        narrow = [r for r in code if r["chars"] > r["room"] + 0.5]
        tightest = min((r["room"] - r["chars"] for r in code), default=0)
        print(f"{chapter} at {report['width']} px: {len(code)} code blocks, {len(rows) - len(code)} outputs; "
              f"{len(scrolls)} scroll sideways; 88 characters fit with {tightest:.0f} px to spare"
              + (f" (code lines over 88 characters: {long_lines})" if long_lines else ""))
        if scrolls:
            failures.append(f"{chapter}: {len(scrolls)} blocks scroll sideways at 1280 px: {scrolls[:2]}")
        if narrow:
            failures.append(f"{chapter}: 88 characters do not fit {len(narrow)} code blocks: {narrow[:2]}")
    return failures


def find_browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    sys.exit("no Chromium found (tried " + ", ".join(BROWSERS) + "); on Debian: apt-get install -y chromium")


def screenshot(browser: str, url: str, path: Path, budget_ms: int) -> None:
    """The README's picture of the page (book/images/browser-sampler.png): a 1100 x 1500 window, cut to
    the article (title, sampler, sample, probabilities, attention), scaled to 70% and 48 colours."""
    from PIL import Image  # noqa: PLC0415 (matplotlib's dependency; only this option needs it)

    subprocess.run([browser, *FLAGS, f"--virtual-time-budget={budget_ms}", "--window-size=1100,1500",
                    "--hide-scrollbars", f"--screenshot={path}", url], capture_output=True, timeout=300)
    image = Image.open(path).convert("RGB").crop((236, 100, 1086, 1480))
    image = image.resize((image.width * 7 // 10, image.height * 7 // 10), Image.LANCZOS)
    image.quantize(colors=48, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="run `jupyter-book build book` first")
    parser.add_argument("--screenshot", type=Path, help="also save a screenshot of the sampler here")
    parser.add_argument("--budget-ms", type=int, default=30000, help="virtual time the page gets to run")
    args = parser.parse_args()
    browser = find_browser()
    if args.build:
        subprocess.run(["jupyter-book", "build", "book"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    if not (HTML / PAGE).is_file():
        sys.exit(f"{HTML / PAGE} is missing: build the book first (jupyter-book build book) or pass --build")
    too_big = [f"{f.relative_to(HTML)} ({f.stat().st_size:,} bytes)" for f in HTML.rglob("*")
               if f.is_file() and f.stat().st_size > MAX_BYTES]

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(BookHandler, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    url = f"{base}/{PAGE}"
    try:
        t0 = time.perf_counter()
        dom, _ = chromium(browser, url, budget_ms=args.budget_ms)
        seconds = time.perf_counter() - t0
        if args.screenshot:
            screenshot(browser, url, args.screenshot.resolve(), args.budget_ms)
        failures = check_widget_page(browser, base, args.budget_ms)
        failures += check_code_fits(browser, base, min(args.budget_ms, 10000))
    finally:
        server.shutdown()

    sampler = element_text(dom, "browser-sampler")
    sample = element_text(dom, "browser-sample")
    status = element_text(dom, "bs-status")
    print(f"{url} in headless {Path(browser).name}: {seconds:.1f} s")
    print(f"#bs-status: {status!r}")
    print(f"#browser-sample: {sample!r}")
    if sampler is None or sample is None or sample not in sampler:
        failures.append("the page has no #browser-sample inside #browser-sampler")
    elif not sample.strip() or sample.strip() == "ROMEO:":
        failures.append("#browser-sample is empty: the model made no text")
    if too_big:
        failures.append("files over 2 MB in the built book: " + ", ".join(too_big))
    for failure in failures:
        print("FAIL:", failure)
    if not failures:
        print(f"OK: #browser-sample holds {len(sample)} characters; chapter 7 draws its saved widgets with no "
              f"network; 88 characters of code fit at 1280 px; no file of the built book is over 2 MB")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
