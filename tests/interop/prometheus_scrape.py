"""A real Prometheus server scrapes the demo's /metrics endpoint on loopback;
after a known sequence of logins and refusals, queries through Prometheus's
HTTP API return exactly the counts the sequence made."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import requests

from harness import TARGET, DemoServer, Results, free_port, stop


def prometheus_binary():
    return shutil.which("prometheus")


class Prometheus:
    """A Prometheus server on loopback scraping `target` every second, with
    its data in a temporary directory removed afterwards."""

    def __init__(self, target):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.target = target
        self.dir = tempfile.mkdtemp(prefix="authgate-prometheus-")
        self.process = None

    def __enter__(self):
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global:\n"
                "  scrape_interval: 1s\n"
                "  evaluation_interval: 1s\n"
                "scrape_configs:\n"
                "  - job_name: authgate-demo\n"
                "    static_configs:\n"
                f"      - targets: ['{self.target}']\n"
            )
        logs = os.path.join(TARGET, "interop-logs")
        os.makedirs(logs, exist_ok=True)
        self.log = open(os.path.join(logs, f"prometheus-{self.port}.log"), "wb")
        self.process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError("prometheus did not become ready")

    def __exit__(self, *exc):
        if self.process:
            stop(self.process, timeout=10)
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def query(self, expression):
        """The value of an instant query that must name one series, or None."""
        reply = requests.get(self.base + "/api/v1/query", params={"query": expression}, timeout=5).json()
        if reply.get("status") != "success":
            raise RuntimeError(f"query {expression}: {reply}")
        result = reply["data"]["result"]
        if len(result) != 1:
            return None
        return float(result[0]["value"][1])

    def wait_for(self, expression, expected, seconds=30):
        """Polls until the query answers `expected` (new scrapes arrive every
        second); the last answer otherwise."""
        deadline = time.time() + seconds
        value = None
        while time.time() < deadline:
            value = self.query(expression)
            if value == expected:
                return value
            time.sleep(0.5)
        return value


def main():
    results = Results("prometheus")
    if prometheus_binary() is None:
        print("FAIL prometheus: the prometheus binary is missing (scripts/test installs it)")
        return False
    metrics_port = free_port()
    with DemoServer(METRICS_ADDR=f"127.0.0.1:{metrics_port}") as demo:
        url = demo.base
        # The endpoint is on its own listener, not on the API's.
        results.check(requests.get(f"{url}/metrics").status_code == 404, "no /metrics on the API listener")
        page = requests.get(f"http://127.0.0.1:{metrics_port}/metrics")
        results.check(page.status_code == 200 and page.headers["content-type"].startswith("text/plain"),
                      f"/metrics answers the text format: {page.status_code} {page.headers.get('content-type')}")

        # The known sequence.
        for _ in range(2):
            ok = requests.post(f"{url}/login", data={"username": "admin", "password": "admin"})
            results.check(ok.status_code == 200, f"inSCADA login: {ok.status_code}")
        for _ in range(3):
            bad = requests.post(f"{url}/login", data={"username": "admin", "password": "not-the-password"})
            results.check(bad.status_code == 401, f"wrong password: {bad.status_code}")
        # Five failures lock an account (one that does not exist, as well),
        # the sixth attempt is refused without a check.
        for _ in range(5):
            requests.post(f"{url}/login", data={"username": "nobody", "password": "guess"})
        locked = requests.post(f"{url}/login", data={"username": "nobody", "password": "guess"})
        results.check(locked.status_code == 423, f"locked: {locked.status_code}")
        core = requests.post(f"{url}/api/login", json={"username": "admin", "password": "admin"})
        results.check(core.status_code == 200, f"Core login: {core.status_code}")
        access = core.json()["access_token"]
        for _ in range(2):
            anonymous = requests.get(f"{url}/api/me")
            results.check(anonymous.status_code == 401, f"anonymous: {anonymous.status_code}")
        malformed = requests.get(f"{url}/api/me", headers={"Authorization": "Bearer not.a.token"})
        results.check(malformed.status_code == 401, f"malformed token: {malformed.status_code}")
        for _ in range(4):
            me = requests.get(f"{url}/api/me", headers={"Authorization": f"Bearer {access}",
                                                       "X-Space": "default_space"})
            results.check(me.status_code == 200, f"bearer request: {me.status_code} {me.text}")
        forbidden = requests.get(f"{url}/api/me", headers={"Authorization": f"Bearer {access}",
                                                          "X-Space": "elsewhere"})
        results.check(forbidden.status_code == 403, f"space not granted: {forbidden.status_code}")

        with Prometheus(f"127.0.0.1:{metrics_port}") as prometheus:
            expected = {
                'authgate_logins_total{preset="cookie_session",result="success"}': 2,
                'authgate_logins_total{preset="cookie_session",result="invalid_credentials"}': 8,
                'authgate_logins_total{preset="cookie_session",result="locked"}': 1,
                'authgate_logins_total{preset="bearer_pair",result="success"}': 1,
                'authgate_lockouts_total': 1,
                'authgate_locked_accounts': 1,
                'authgate_requests_total{layer="auth",outcome="refused",reason="missing_token"}': 2,
                'authgate_requests_total{layer="auth",outcome="refused",reason="malformed"}': 1,
                'authgate_requests_total{layer="auth",outcome="allowed",reason="verified"}': 5,
                'authgate_requests_total{layer="space",outcome="refused",reason="not_granted"}': 1,
                'authgate_requests_total{layer="space",outcome="allowed",reason="ok"}': 4,
                # The malformed token is looked up too, and missed.
                'authgate_token_cache_misses_total': 2,
                'authgate_token_cache_hits_total': 4,
                'authgate_token_cache_entries': 1,
                'up{job="authgate-demo"}': 1,
            }
            for expression, value in expected.items():
                got = prometheus.wait_for(expression, value)
                results.check(got == value, f"{expression} = {got}, expected {value}")
            # Label values are bounded: no username or address appears.
            series = requests.get(prometheus.base + "/api/v1/series",
                                  params={"match[]": '{__name__=~"authgate_.*"}'}, timeout=5).json()["data"]
            labels = {value for s in series for key, value in s.items() if key not in ("__name__", "job", "instance")}
            results.check(not {"admin", "nobody", "127.0.0.1"} & labels, f"label values: {sorted(labels)}")
    return results.finish()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
