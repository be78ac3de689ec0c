#!/usr/bin/env bash
# Each document's curl commands, adapted to the demo's loopback address.
# Usage: curl_flows.sh BASE_URL
set -euo pipefail
B="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL curl: $what"; fi
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# 000: "curl -c cookies.txt -X POST https://localhost:8082/login -F ..." then the API call.
curl -s -c "$work/cookies.txt" -X POST "$B/login" -F "username=admin" -F "password=admin" > "$work/login.json"
check "000 login body" grep -q '"expire-seconds":300' "$work/login.json"
check "000 cookie jar has both tokens" grep -q ins_refresh_token "$work/cookies.txt"
curl -s -b "$work/cookies.txt" "$B/api/projects" -H "X-Space: default_space" > "$work/projects.json"
check "000 projects" grep -q default_space "$work/projects.json"

# 001: login, API call, refresh (as in the document).
curl -s "$B/api/login" -H 'accept: application/json' -H 'Content-Type: application/json' -X POST \
  -d '{"username": "admin", "password": "admin"}' > "$work/pair.json"
access="$(field access_token < "$work/pair.json")"
refresh="$(field refresh_token < "$work/pair.json")"
code="$(curl -s -o /dev/null -w '%{http_code}' "$B/api/me" -H 'accept: application/json' -H "Authorization: Bearer $access" -X GET)"
check "001 API call with the access token ($code)" test "$code" = 200
curl -s "$B/api/login/refresh" -H 'accept: application/json' -H 'Content-Type: application/json' \
  -H "Authorization: Bearer $refresh" -X GET > "$work/refreshed.json"
check "001 refresh answers an access token" grep -q '"access_token"' "$work/refreshed.json"
code="$(curl -s -o /dev/null -w '%{http_code}' "$B/api/login/refresh" -H "Authorization: Bearer $access")"
check "001 an access token does not refresh ($code)" test "$code" = 401

# 002: sign-in, refresh with GrantType, sign-out.
curl -s "$B/authenticate/signin" -H 'Content-Type: application/json' \
  -d '{"Username":"admin","Password":"admin","KeepLoggedIn":true}' > "$work/nx.json"
nx_refresh="$(field RefreshToken < "$work/nx.json")"
curl -s "$B/authenticate/refresh" -H "Authorization: Bearer $nx_refresh" -H 'Content-Type: application/json' \
  -d '{"GrantType":"refresh_token"}' > "$work/nx2.json"
check "002 refresh answers a new pair" grep -q '"RefreshToken"' "$work/nx2.json"
nx_access="$(field AccessToken < "$work/nx2.json")"
code="$(curl -s -o "$work/signout.json" -w '%{http_code}' -X POST "$B/authenticate/signout" -H "Authorization: Bearer $nx_access")"
check "002 sign-out ($code)" test "$code" = 200
check "002 sign-out says the authorization is invalid" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["AuthorizationInvalid"] is True and d["Email"] == "admin@example.com"' "$work/signout.json"

# 003: the Python example's request, with curl; then a service account.
curl -s "$B/api/authentication/login" -H 'Content-Type: application/json' \
  -d '{"username":"admin","password":"admin","oldPassword":""}' > "$work/reg.json"
check "003 id and auth_token" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["id"] and d["auth_token"]' "$work/reg.json"
token="$(field auth_token < "$work/reg.json")"
code="$(curl -s -o "$work/sa.json" -w '%{http_code}' "$B/api/serviceAccounts" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"purpose":"CI sync","durationDays":30}')"
check "003 service account created ($code)" test "$code" = 201

# 004: the X-Auth-Token header, then every call carries it.
curl -s -D "$work/headers.txt" "$B/api/v2/login" -H 'Content-Type: application/json' \
  -d '{"username":"admin","password":"admin"}' > "$work/wf.json"
x_auth="$(grep -i '^x-auth-token:' "$work/headers.txt" | cut -d' ' -f2 | tr -d '\r')"
check "004 header and body agree" test "$x_auth" = "$(field X-Auth-Token < "$work/wf.json")"
code="$(curl -s -o /dev/null -w '%{http_code}' "$B/api/me" -H "X-Auth-Token: $x_auth")"
check "004 API call with X-Auth-Token ($code)" test "$code" = 200
# The demo serves the deprecated GET login, marked so.
code="$(curl -s -D "$work/v1headers.txt" -o /dev/null -w '%{http_code}' "$B/api/v1/login?username=admin&password=admin")"
check "004 the deprecated GET login ($code)" test "$code" = 200
check "004 the deprecated GET login says so" grep -qi '^deprecation: true' "$work/v1headers.txt"
code="$(curl -s -o /dev/null -w '%{http_code}' "$B/api/v2/login" -H 'Content-Type: application/json' \
  -d '{"username":"retired","password":"retired"}')"
check "004 an account past its end ($code)" test "$code" = 403

echo "curl: $passed passed, $failed failed"
test "$failed" = 0
