"""PyJWT against the crate, both ways: PyJWT verifies the demo's tokens with
the keys the demo publishes at /.well-known/jwks.json; PyJWT mints tokens for
every algorithm that the crate's verifier accepts or refuses exactly as it
should."""

import json
import os
import subprocess
import sys
import time

import jwt
import requests

from harness import KEYS, VERIFY, DemoServer, Results

SECRET = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
PRIVATE = {"RS": "rsa_private", "PS": "rsa_private", "ES256": "ec256_private", "ES384": "ec384_private", "EdDSA": "ed25519_private"}
PUBLIC = {"RS": "rsa_public", "PS": "rsa_public", "ES256": "ec256_public", "ES384": "ec384_public", "EdDSA": "ed25519_public"}
ALGORITHMS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]


def key_name(table, alg):
    return table.get(alg) or table[alg[:2]]


def signing_key(alg):
    if alg.startswith("HS"):
        return SECRET
    with open(os.path.join(KEYS, key_name(PRIVATE, alg) + ".pem"), "rb") as f:
        return f.read()


def verifying_key(alg):
    if alg.startswith("HS"):
        return SECRET
    return os.path.join(KEYS, key_name(PUBLIC, alg) + ".pem")


def claims(**changes):
    now = int(time.time())
    base = {"sub": "admin", "iat": now, "exp": now + 300, "jti": "pyjwt", "usefor": "access", "iss": "pyjwt"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def demo_tokens(results, demo):
    jwks = requests.get(f"{demo.base}/.well-known/jwks.json").json()
    results.check(len(jwks["keys"]) == 2 and all("d" not in k for k in jwks["keys"]), "two public keys published")
    client = jwt.PyJWKClient(f"{demo.base}/.well-known/jwks.json")
    pair = requests.post(f"{demo.base}/api/login", json={"username": "admin", "password": "admin"}).json()
    x_auth = requests.post(f"{demo.base}/api/v2/login", json={"username": "admin", "password": "admin"}).headers["X-Auth-Token"]
    for name, token, issuer in [("001 access", pair["access_token"], "datarhei-core"),
                                ("001 refresh", pair["refresh_token"], "datarhei-core"),
                                ("004 X-Auth-Token", x_auth, "tower-authgate-demo")]:
        key = client.get_signing_key_from_jwt(token)
        decoded = jwt.decode(token, key.key, algorithms=["EdDSA"], issuer=issuer,
                             options={"require": ["exp", "iat", "iss", "jti", "sub"]})
        results.check(decoded["sub"] == "admin", f"PyJWT verifies the demo's {name} token")
    results.check(jwt.decode(pair["access_token"], options={"verify_signature": False})["exi"] == 600, "exi claim")


def crate_verdicts(cases):
    lines = "\n".join(json.dumps(c["input"]) for c in cases) + "\n"
    out = subprocess.run([VERIFY], input=lines.encode(), capture_output=True, check=True).stdout.decode()
    return [json.loads(line) for line in out.splitlines()]


def minted_tokens(results):
    cases = []
    for alg in ALGORITHMS:
        key = signing_key(alg)
        other = "another-secret-another-secret-another-secret-another-secret-64b!" if alg.startswith("HS") else None
        def case(name, token, accepted, issuer="pyjwt"):
            cases.append({"name": f"{alg} {name}", "accepted": accepted,
                          "input": {"alg": alg, "key": verifying_key(alg), "token": token, "issuer": issuer}})
        case("valid", jwt.encode(claims(), key, algorithm=alg), True)
        case("expired", jwt.encode(claims(exp=int(time.time()) - 10), key, algorithm=alg), False)
        case("not yet valid", jwt.encode(claims(nbf=int(time.time()) + 600), key, algorithm=alg), False)
        case("without exp", jwt.encode(claims(exp=None), key, algorithm=alg), False)
        case("refresh kind", jwt.encode(claims(usefor="refresh"), key, algorithm=alg), False)
        case("wrong issuer", jwt.encode(claims(), key, algorithm=alg), False, issuer="someone-else")
        token = jwt.encode(claims(), key, algorithm=alg)
        head, body, sig = token.split(".")
        case("tampered", f"{head}.{jwt.utils.base64url_encode(json.dumps(claims(sub='root')).encode()).decode()}.{sig}", False)
        case("alg none", jwt.encode(claims(), None, algorithm="none"), False)
        if other:
            case("wrong secret", jwt.encode(claims(), other, algorithm=alg), False)
    # Algorithm confusion: HS256 keyed with the RSA public key's text.
    with open(os.path.join(KEYS, "rsa_public.pem"), "rb") as f:
        public_text = f.read()
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = jwt.utils.base64url_encode(json.dumps(claims()).encode())
    import hmac, hashlib
    sig = jwt.utils.base64url_encode(hmac.new(public_text, header + b"." + payload, hashlib.sha256).digest())
    confused = (header + b"." + payload + b"." + sig).decode()
    cases.append({"name": "HS256 keyed with the RS256 public key", "accepted": False,
                  "input": {"alg": "RS256", "key": verifying_key("RS256"), "token": confused, "issuer": "pyjwt"}})
    for case, verdict in zip(cases, crate_verdicts(cases)):
        results.check(verdict["accepted"] == case["accepted"], f"{case['name']}: {verdict}")


def main():
    results = Results("pyjwt")
    with DemoServer() as demo:
        demo_tokens(results, demo)
    minted_tokens(results)
    return results.finish()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
