"""Shared helpers for the interoperability tests: start the demo server on a
free loopback port, stop it afterwards, and count results."""

import os
import socket
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
DEMO = os.path.join(TARGET, "debug", "examples", "demo")
VERIFY = os.path.join(TARGET, "debug", "examples", "verify_token")
KEYS = os.path.join(ROOT, "tests", "keys")
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process, timeout=5):
    """Ends `process`: asked to stop, then killed if it has not within
    `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class DemoServer:
    """The demo on 127.0.0.1, in development mode, in-memory stores."""

    def __init__(self, **env):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env.setdefault("METRICS_ADDR", f"127.0.0.1:{free_port()}")
        self.env = dict(os.environ, DEMO_ADDR=f"127.0.0.1:{self.port}", LOGIN_THROTTLE_PER_MINUTE="0", **env)
        self.process = None

    def __enter__(self):
        # The demo prints its events: into a file, never an unread pipe.
        logs = os.path.join(TARGET, "interop-logs")
        os.makedirs(logs, exist_ok=True)
        self.log_path = os.path.join(logs, f"demo-{self.port}.log")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([DEMO], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError("the demo did not start")

    def __exit__(self, *exc):
        if self.process:
            stop(self.process)
            self.log.close()
        return False


class Results:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = []

    def check(self, condition, what):
        if condition:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"FAIL {self.name}: {what}")

    def finish(self):
        print(f"{self.name}: {self.passed} passed, {len(self.failed)} failed")
        return not self.failed
