"""Document 000's Python `requests` example, unchanged except for the URL,
against the demo; then the transparent-renewal and HttpOnly properties as a
`requests` user sees them."""

import sys

import requests

from harness import DemoServer, Results


def main():
    results = Results("requests")
    with DemoServer() as demo:
        url = demo.base
        # --- document 000, verbatim but for the address ---
        session = requests.Session()
        session.post(f'{url}/login',
                     data={'username': 'admin', 'password': 'admin'},
                     verify=False)
        projects = session.get(f'{url}/api/projects',
                               headers={'X-Space': 'default_space'}).json()
        # --- end of the document's example ---
        results.check(isinstance(projects, list) and projects and projects[0]["space"] == "default_space",
                      f"projects listed: {projects}")
        cookies = {c.name: c for c in session.cookies}
        results.check(set(cookies) == {"ins_access_token", "ins_refresh_token"}, f"cookies: {sorted(cookies)}")
        results.check(all(c.has_nonstandard_attr("HttpOnly") for c in cookies.values()), "cookies are HttpOnly")
        results.check(not any(c.secure for c in cookies.values()), "development mode: no Secure on plain HTTP")
        # The multipart form of the curl example works the same.
        multipart = requests.post(f"{url}/login", files={"username": (None, "admin"), "password": (None, "admin")})
        results.check(multipart.status_code == 200 and multipart.json() == {"expire-seconds": 300, "spaces": ["default_space", "production"]},
                      f"multipart login: {multipart.status_code} {multipart.text}")
        # Losing the access cookie: renewed from the refresh cookie, transparently.
        session.cookies.clear(domain="127.0.0.1", path="/", name="ins_access_token")
        me = session.get(f"{url}/api/me", headers={"X-Space": "production"})
        results.check(me.status_code == 200 and me.json()["space"] == "production", f"renewed: {me.status_code} {me.text}")
        results.check("ins_access_token" in {c.name for c in session.cookies}, "a fresh access cookie was set")
        # A space the token lacks is refused.
        other = session.get(f"{url}/api/projects", headers={"X-Space": "elsewhere"})
        results.check(other.status_code == 403, f"foreign space: {other.status_code}")
        wrong = requests.post(f"{url}/login", data={"username": "admin", "password": "nope"})
        results.check(wrong.status_code == 401 and "ins_access_token" not in wrong.cookies, f"wrong password: {wrong.status_code}")
    return results.finish()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
