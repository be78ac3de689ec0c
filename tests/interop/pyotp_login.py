"""Logging in as the TOTP demo user with codes from pyotp (Google
Authenticator's algorithm), through documents 000, 001 and 002."""

import sys
from datetime import datetime

import pyotp
import requests

from harness import TOTP_SECRET, DemoServer, Results


def main():
    results = Results("pyotp")
    totp = pyotp.TOTP(TOTP_SECRET)
    code_now = totp.now()
    with DemoServer() as demo:
        base = demo.base
        # 002: sign-in yields a TotpAccessCode, exchanged with the code.
        signin = requests.post(f"{base}/authenticate/signin",
                               json={"Username": "operator", "Password": "operator", "KeepLoggedIn": False}).json()
        results.check(signin["AccessToken"] == "" and signin["TotpAccessCode"], f"pending token: {signin}")
        step = requests.post(f"{base}/authenticate/totp", json={"token": signin["TotpAccessCode"], "totp": code_now})
        results.check(step.status_code == 200 and step.json()["AccessToken"], f"TOTP step: {step.status_code} {step.text}")
        me = requests.get(f"{base}/api/me", headers={"Authorization": f"Bearer {step.json()['AccessToken']}"})
        results.check(me.status_code == 200 and me.json()["username"] == "operator", f"operator is logged in: {me.text}")
        # The same code again is refused (replay guard).
        again = requests.post(f"{base}/authenticate/signin",
                              json={"Username": "operator", "Password": "operator", "KeepLoggedIn": False}).json()
        replay = requests.post(f"{base}/authenticate/totp", json={"token": again["TotpAccessCode"], "totp": code_now})
        results.check(replay.status_code == 401, f"replayed code refused: {replay.status_code}")
        # 000: password, then the code in the second form.
        session = requests.Session()
        first = session.post(f"{base}/login", data={"username": "operator", "password": "operator"})
        results.check(first.json().get("otp-required") is True, f"000 asks for a code: {first.text}")
        code = totp.at(datetime.now(), counter_offset=1)
        second = session.post(f"{base}/login/otp", data={"otp": code})
        results.check(second.status_code == 200, f"000 code accepted (next step, within drift): {second.status_code} {second.text}")
        projects = session.get(f"{base}/api/projects")
        results.check(projects.status_code == 200, f"000 session works: {projects.status_code}")
        # 001: code with the password; a code from two steps back is refused.
        old = totp.at(datetime.now(), counter_offset=-2)
        stale = requests.post(f"{base}/api/login", json={"username": "operator", "password": "operator", "otp": old})
        results.check(stale.status_code == 401, f"stale code refused: {stale.status_code}")
        # The provisioning URI an authenticator would scan holds the same secret.
        uri = totp.provisioning_uri(name="operator", issuer_name="tower-authgate demo")
        results.check(pyotp.parse_uri(uri).secret == TOTP_SECRET, "provisioning URI round trip")
    return results.finish()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
