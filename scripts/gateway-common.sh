# Set-up shared by scripts/gateway-load, gateway-peers and gateway-instructions:
# sourced, not run. Everything listens on loopback.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: until something accepts on PORT (a minute at most: a
# server under valgrind starts slowly).
wait_port() {
  for _ in $(seq 1200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done
  echo "nothing on $1" >&2
  exit 1
}

# gateway_config DIR THREADS [EXAMPLES NAME]: EXAMPLES/gateway.toml (default
# examples/) with THREADS worker threads and its users file found from
# anywhere, as DIR/NAME (default gateway.toml).
gateway_config() {
  local examples="${3:-$PWD/examples}"
  sed -e "s|^# worker_threads = .*|worker_threads = $2|" \
      -e "s|^file = \"gateway-users.toml\"|file = \"$examples/gateway-users.toml\"|" \
      "$examples/gateway.toml" >"$1/${4:-gateway.toml}"
}

# nginx_config DIR WORKERS UPSTREAM_PORT LISTEN_PORT [DIRECTIVE...]: nginx
# proxying everything on LISTEN_PORT to the upstream over kept-alive
# connections, as DIR/nginx.conf; the DIRECTIVEs go at the top.
nginx_config() {
  local dir="$1" workers="$2" upstream="$3" listen="$4"; shift 4
  mkdir -p "$dir/nginx"
  {
    for directive in "$@"; do echo "$directive"; done
    cat <<CONF
daemon off;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  upstream app { server 127.0.0.1:$upstream; keepalive 64; }
  server {
    listen 127.0.0.1:$listen;
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
}
CONF
  } >"$dir/nginx.conf"
}

# login_token PORT: an access token for the example's admin user.
login_token() {
  curl -fsS "http://127.0.0.1:$1/api/login" -H 'Content-Type: application/json' \
    -d '{"username":"admin","password":"admin"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# serve_public FILE: turns on the example configuration's commented
# `public_paths = ["/public/"]` line in FILE, so that authgate also serves
# /public/ without a token (the address filter alone); stops if the line
# is gone.
serve_public() {
  sed -i 's|^# public_paths = .*|public_paths = ["/public/"]|' "$1"
  grep -q '^public_paths = \["/public/"\]' "$1" \
    || { echo "$1: examples/gateway.toml no longer has the public_paths line" >&2; exit 1; }
}

# build_release TARGET_DIR EXAMPLE...: authgate as `cargo install
# tower-authgate --features gateway` builds it, then the EXAMPLEs, in two
# cargo runs. One run for both would build authgate with the features the
# examples' dev-dependencies turn on (axum's defaults among them, whose
# `original-uri` clones every request's URI into an extension), which an
# installed authgate does not have. The examples' run builds no binary, so
# it leaves authgate as it is.
build_release() {
  local target="$1"; shift
  cargo build --quiet --release --features gateway --bin authgate --target-dir "$target"
  local examples=()
  for example in "$@"; do examples+=(--example "$example"); done
  cargo build --quiet --release --features gateway "${examples[@]}" --target-dir "$target"
}

# baseline_build REV OUT_DIR TARGET_DIR: builds authgate as it was at git
# revision REV (in a temporary worktree, with TARGET_DIR so that the
# dependencies built for the current code are reused) into OUT_DIR/authgate-REV,
# and writes that revision's examples/gateway.toml and users file beside it
# (OUT_DIR/baseline/examples/), so that each binary reads a configuration it
# knows. Prints the binary's path.
baseline_build() {
  local rev="$1" out="$2" target="$3"
  local tree="$out/baseline"
  git worktree add --quiet --detach "$tree" "$rev" >&2
  (cd "$tree" && CARGO_TARGET_DIR="$OLDPWD/$target" cargo build --quiet --release --features gateway --bin authgate >&2)
  cp "$target/release/authgate" "$out/authgate-$rev"
  git worktree remove --force "$tree" >&2
  mkdir -p "$tree/examples"
  git show "$rev:examples/gateway.toml" >"$tree/examples/gateway.toml"
  git show "$rev:examples/gateway-users.toml" >"$tree/examples/gateway-users.toml"
  chmod 600 "$tree/examples/gateway-users.toml"
  echo "$out/authgate-$rev"
}
