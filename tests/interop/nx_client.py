"""A Scailable / Nx client written with `requests`, as the document reads:
the Nx login with an email answering four fields, the access token on an
API call, then registration (password strength first, then /user) and a
sign-in with the new email, whose token PyJWT reads."""

import sys
import uuid

import jwt
import requests

from harness import DemoServer, Results

FOUR_FIELDS = ["AccessToken", "Error", "RefreshToken", "TotpAccessCode"]
USER_FIELDS = ["Email", "IsSuperAdmin", "Name", "NxID", "Organisation", "UUID"]


def main():
    results = Results("nx-requests")
    with DemoServer() as demo:
        base = demo.base
        # Log into Nx with the account's email.
        login = requests.post(f"{base}/authenticate/nx", json={"Email": "admin@example.com", "Password": "admin"}, timeout=10)
        body = login.json()
        results.check(login.status_code == 200 and sorted(body) == FOUR_FIELDS, f"Nx login: {login.status_code} {login.text}")
        results.check(body["AccessToken"] and body["RefreshToken"] and body["Error"] == "" and body["TotpAccessCode"] == "",
                      f"a pair and no error: {body}")
        results.check(login.headers.get("Cache-Control") == "no-store", f"not to be stored: {login.headers}")
        me = requests.get(f"{base}/api/me", headers={"Authorization": f"Bearer {body['AccessToken']}"}, timeout=10)
        results.check(me.status_code == 200 and me.json()["username"] == "admin", f"the access token works: {me.status_code} {me.text}")
        # A wrong password: 401, the same four fields, the reason in Error.
        wrong = requests.post(f"{base}/authenticate/nx", json={"Email": "admin@example.com", "Password": "nope"}, timeout=10)
        results.check(wrong.status_code == 401 and sorted(wrong.json()) == FOUR_FIELDS and wrong.json()["Error"]
                      and wrong.json()["AccessToken"] == "", f"wrong password: {wrong.status_code} {wrong.text}")
        results.check(wrong.headers.get("WWW-Authenticate") == "Bearer", f"challenge: {wrong.headers}")

        # Registration: the password's strength first, then the account.
        email = f"nx-{uuid.uuid4().hex[:12]}@example.org"
        weak = requests.post(f"{base}/authenticate/password-strength", json={"Password": "password1"}, timeout=10).json()
        results.check(weak["Strong"] is False and 0 <= weak["Score"] <= 2 and weak["Message"], f"weak password judged: {weak}")
        password = "correct horse battery staple"
        strength = requests.post(f"{base}/authenticate/password-strength", json={"Password": password}, timeout=10).json()
        results.check(strength == {"Strong": True, "Score": 4, "Message": "the password is strong enough"}, f"strong password: {strength}")
        created = requests.post(f"{base}/user", json={"Email": email, "Password": password, "Name": "Nx Client"}, timeout=10)
        user = created.json()
        results.check(created.status_code == 201 and sorted(user) == USER_FIELDS, f"registered: {created.status_code} {created.text}")
        results.check(user["Email"] == email and user["Name"] == "Nx Client" and user["IsSuperAdmin"] is False
                      and user["Organisation"] == {"Name": "", "UUID": ""} and uuid.UUID(user["UUID"]),
                      f"the user's object: {user}")
        refused = requests.post(f"{base}/user", json={"Email": f"x{email}", "Password": "password1", "Name": "Weak"}, timeout=10)
        results.check(refused.status_code == 400 and refused.json()["Field"]["Name"] == "Password",
                      f"weak password refused: {refused.status_code} {refused.text}")

        # The new account signs in with its email, at both logins.
        signin = requests.post(f"{base}/authenticate/signin", json={"Username": email, "Password": password, "KeepLoggedIn": False}, timeout=10)
        results.check(signin.status_code == 200 and sorted(signin.json()) == ["AccessToken", "RefreshToken"],
                      f"sign-in with the new email: {signin.status_code} {signin.text}")
        claims = jwt.decode(signin.json()["AccessToken"], options={"verify_signature": False})
        results.check(claims["sub"] == email and claims["uid"] == user["UUID"] and claims["usefor"] == "access",
                      f"the new account's access token: {claims}")
        nx = requests.post(f"{base}/authenticate/nx", json={"Email": email, "Password": password}, timeout=10)
        results.check(nx.status_code == 200 and nx.json()["AccessToken"], f"Nx login with the new email: {nx.status_code} {nx.text}")
    return results.finish()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
