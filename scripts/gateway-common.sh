# Set-up shared by scripts/gateway-load and scripts/gateway-instructions:
# sourced, not run. Everything listens on loopback.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: until something accepts on PORT (a minute at most: a
# server under valgrind starts slowly).
wait_port() {
  for _ in $(seq 1200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done
  echo "nothing on $1" >&2
  exit 1
}

# gateway_config DIR THREADS: examples/gateway.toml with THREADS worker
# threads and its users file found from anywhere, as DIR/gateway.toml.
gateway_config() {
  sed -e "s|^# worker_threads = .*|worker_threads = $2|" \
      -e "s|^file = \"gateway-users.toml\"|file = \"$PWD/examples/gateway-users.toml\"|" \
      examples/gateway.toml >"$1/gateway.toml"
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
