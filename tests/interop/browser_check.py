"""A real browser: headless Chromium loads a page served by the demo, logs
in through the form with fetch(..., {credentials: 'include'}), calls
/api/projects with X-Space, and shows that document.cookie cannot read the
HttpOnly tokens."""

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile

from harness import DemoServer, Results


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def main():
    browser = chromium()
    if browser is None:
        print("SKIP browser: Chromium could not be installed on this machine")
        return True
    results = Results("browser")
    with DemoServer() as demo, tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom",
             f"{demo.base}/browser-login.html"],
            capture_output=True, timeout=120, check=False,
        ).stdout.decode()
        match = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
        results.check(match is not None, "the page rendered a result")
        if match:
            out = json.loads(html.unescape(match.group(1))) if match.group(1) != "pending" else {}
            results.check(out.get("login") == 200, f"form login: {out}")
            results.check(out.get("projects") == 200 and out["projectsBody"][0]["space"] == "default_space",
                          f"API call with the session cookie and X-Space: {out}")
            results.check(out.get("documentCookie") == "", f"HttpOnly tokens are invisible to script: {out.get('documentCookie')!r}")
    return results.finish()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
