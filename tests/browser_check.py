"""The built page "Your GPT in the browser" in a real headless browser: served by a plain static file
server on 127.0.0.1, with every other host name unresolvable (offline), it must fill #browser-sample
with a sample made by gpt.js. Also checks that no file of the built book is over 2 MB.

Run: python tests/browser_check.py [--build] [--screenshot page.png]
     (needs Chromium: `apt-get install -y chromium` on Debian; not run by pytest)
"""

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
PAGE = "browser.html"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    sys.exit("no Chromium found (tried " + ", ".join(BROWSERS) + "); on Debian: apt-get install -y chromium")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="run `jupyter-book build book` first")
    parser.add_argument("--screenshot", type=Path, help="also save a screenshot of the page here")
    parser.add_argument("--budget-ms", type=int, default=30000, help="virtual time the page gets to run")
    args = parser.parse_args()
    browser = find_browser()
    if args.build:
        subprocess.run(["jupyter-book", "build", "book"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    if not (HTML / PAGE).is_file():
        sys.exit(f"{HTML / PAGE} is missing: build the book first (jupyter-book build book) or pass --build")
    too_big = [f"{f.relative_to(HTML)} ({f.stat().st_size:,} bytes)" for f in HTML.rglob("*")
               if f.is_file() and f.stat().st_size > MAX_BYTES]

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(HTML)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/{PAGE}"
    try:
        for _ in range(100):  # wait for the server to answer
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        t0 = time.perf_counter()
        budget = f"--virtual-time-budget={args.budget_ms}"
        dom = subprocess.run([browser, *FLAGS, budget, "--dump-dom", url], capture_output=True, text=True,
                             timeout=300).stdout
        seconds = time.perf_counter() - t0
        if args.screenshot:
            subprocess.run([browser, *FLAGS, budget, "--window-size=1280,2000",
                            f"--screenshot={args.screenshot.resolve()}", url],
                           capture_output=True, timeout=300)
    finally:
        server.terminate()
        server.wait()

    sampler = element_text(dom, "browser-sampler")
    sample = element_text(dom, "browser-sample")
    status = element_text(dom, "bs-status")
    print(f"{url} in headless {Path(browser).name}: {seconds:.1f} s")
    print(f"#bs-status: {status!r}")
    print(f"#browser-sample: {sample!r}")
    failures = []
    if sampler is None or sample is None or sample not in sampler:
        failures.append("the page has no #browser-sample inside #browser-sampler")
    elif not sample.strip() or sample.strip() == "ROMEO:":
        failures.append("#browser-sample is empty: the model made no text")
    if too_big:
        failures.append("files over 2 MB in the built book: " + ", ".join(too_big))
    for failure in failures:
        print("FAIL:", failure)
    if not failures:
        print(f"OK: #browser-sample holds {len(sample)} characters; no file of the built book is over 2 MB")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
