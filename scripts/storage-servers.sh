#!/usr/bin/env bash
# Storage servers for the tests and the benchmark, on 127.0.0.1, each
# stopped by its pid:
#   nginx        WebDAV (PUT, COPY, ...) under /open/, and under /private/
#                with basic auth; files in DIR/dav; also over https with a
#                self-signed certificate (DIR/tls.crt).  PROPFIND comes
#                from the dav_ext module (Debian: libnginx-mod-http-dav-ext)
#                when it is installed; /nolist/ (the same files as /open/)
#                never has it, as nginx's own dav module has not
#   s3rver       S3 (npm, pinned by test/servers/package-lock.json), behind
#   s3 proxy     test/servers/s3-sigv4-proxy.js: checks SigV4 with aws4, logs
#                each request it passes on (s3_log)
#   fault server test/servers/fault-server.js: 503s, hangs, cut transfers
#
# Usage: scripts/storage-servers.sh start DIR     (prints the settings as VAR=value)
#        scripts/storage-servers.sh stop DIR
# PUBLISH_SERVERS_CORS=1 lets web pages of any origin read what is stored
# (nginx /open/, the s3rver bucket), as a public bucket behind a map viewer
# would (the demo sets it; the tests leave it off).
# Ports (set them with the environment): PUBLISH_DAV_PORT 54371,
# PUBLISH_S3RVER_PORT 54372, PUBLISH_S3_PORT 54373, PUBLISH_FAULT_PORT 54374,
# PUBLISH_DAVS_PORT 54377 (https); PUBLISH_DOWN_PORT 54375 is one where
# nothing listens.  A default port that is taken is replaced by the next
# free one 10 further on; the settings printed say which were used.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
SERVERS=$ROOT_DIR/test/servers
cmd=${1:?start or stop}
DIR=${2:?directory}

# port VALUE DEFAULT: VALUE when set; else DEFAULT, or DEFAULT+10, +20, ...
# if something listens there (another checkout's test run, say).  The
# defaults differ in their last digit, so the ports picked never clash.
port() {
	local p=$2
	if [ -n "$1" ]; then echo "$1"; return; fi
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 10)); done
	echo "$p"
}
if [ "$cmd" = start ]; then
	DAV_PORT=$(port "${PUBLISH_DAV_PORT:-}" 54371)
	S3RVER_PORT=$(port "${PUBLISH_S3RVER_PORT:-}" 54372)
	S3_PORT=$(port "${PUBLISH_S3_PORT:-}" 54373)
	FAULT_PORT=$(port "${PUBLISH_FAULT_PORT:-}" 54374)
	DOWN_PORT=$(port "${PUBLISH_DOWN_PORT:-}" 54375)
	DAVS_PORT=$(port "${PUBLISH_DAVS_PORT:-}" 54377)
fi
DAV_USER=publisher
DAV_PASSWORD=dav-pw-5b8e1c7a
S3_KEY_ID=AKIAPUBLISHTEST0001
S3_SECRET=s3-secret-9d2f4e71
S3_BUCKET=publish-test

# wait_http URL: until something answers there (any status), 10 s at most
wait_http() {
	local i
	for i in $(seq 1 100); do
		if curl -s -o /dev/null --max-time 1 "$@"; then return 0; fi
		sleep 0.1
	done
	echo "storage-servers: nothing answers at $*" >&2
	return 1
}

stop_pid_file() {
	local f=$1 pid i
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	rm -f "$f"
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

start() {
	mkdir -p "$DIR"/{dav/open,dav/private,nginx-tmp,s3,logs}
	# the database server (user postgres) reads what lands, and writes tiles there
	if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$DIR/dav"; fi
	chmod 755 "$DIR" "$DIR/dav" "$DIR/logs"

	if [ ! -d "$SERVERS/node_modules/s3rver" ] || [ ! -d "$SERVERS/node_modules/aws4" ]; then
		(cd "$SERVERS" && npm ci --no-audit --no-fund --silent >/dev/null)
	fi

	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
		-addext "subjectAltName=IP:127.0.0.1" \
		-keyout "$DIR/tls.key" -out "$DIR/tls.crt" >/dev/null 2>&1
	chmod 644 "$DIR/tls.crt"
	printf '%s:%s\n' "$DAV_USER" "$(openssl passwd -apr1 "$DAV_PASSWORD")" >"$DIR/htpasswd"
	chmod 644 "$DIR/htpasswd"
	local user_line="" cors_line="" s3_cors=() dav_ext_module="" propfind=""
	if [ -f /usr/lib/nginx/modules/ngx_http_dav_ext_module.so ]; then
		dav_ext_module="load_module /usr/lib/nginx/modules/ngx_http_dav_ext_module.so;"
		propfind="dav_ext_methods PROPFIND OPTIONS;"
	fi
	if [ "$(id -u)" -eq 0 ]; then user_line="user postgres;"; fi
	if [ "${PUBLISH_SERVERS_CORS:-}" = 1 ]; then
		cors_line='add_header Access-Control-Allow-Origin "*";'
		cat >"$DIR/s3-cors.xml" <<CORS
<CORSConfiguration>
	<CORSRule>
		<AllowedOrigin>*</AllowedOrigin>
		<AllowedMethod>GET</AllowedMethod>
		<AllowedMethod>HEAD</AllowedMethod>
	</CORSRule>
</CORSConfiguration>
CORS
		s3_cors=("$DIR/s3-cors.xml")
	fi
	cat >"$DIR/nginx.conf" <<NGINX
$dav_ext_module
$user_line
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/logs/nginx-error.log warn;
events { worker_connections 256; }
http {
	client_body_temp_path $DIR/nginx-tmp/body;
	proxy_temp_path $DIR/nginx-tmp/proxy;
	fastcgi_temp_path $DIR/nginx-tmp/fastcgi;
	uwsgi_temp_path $DIR/nginx-tmp/uwsgi;
	scgi_temp_path $DIR/nginx-tmp/scgi;
	# what each request asked for (never the Authorization header)
	log_format publish '\$request_method \$uri \$status ct="\$http_content_type" cc="\$http_cache_control" ce="\$http_content_encoding"';
	access_log $DIR/logs/nginx-access.log publish;
	types { application/json json; image/png png; }
	default_type application/octet-stream;
	client_max_body_size 100m;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:$DAV_PORT;
		root $DIR/dav;
		location /open/ {
			dav_methods PUT DELETE MKCOL COPY MOVE;
			$propfind
			create_full_put_path on;
			dav_access user:rw group:r all:r;
			$cors_line
		}
		location /nolist/ {
			alias $DIR/dav/open/;
			dav_methods PUT DELETE MKCOL COPY MOVE;
			create_full_put_path on;
			dav_access user:rw group:r all:r;
		}
		location /private/ {
			auth_basic "publish test";
			auth_basic_user_file $DIR/htpasswd;
			dav_methods PUT DELETE MKCOL COPY MOVE;
			$propfind
			create_full_put_path on;
			dav_access user:rw group:r all:r;
		}
	}
	server {
		listen 127.0.0.1:$DAVS_PORT ssl;
		ssl_certificate $DIR/tls.crt;
		ssl_certificate_key $DIR/tls.key;
		root $DIR/dav;
		location /open/ {
			dav_methods PUT DELETE MKCOL COPY MOVE;
			create_full_put_path on;
			dav_access user:rw group:r all:r;
		}
	}
}
NGINX
	nginx -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/logs/nginx-error.log"

	# s3rver's continuation tokens use DES, which OpenSSL 3 keeps in its
	# legacy provider: without it every listing of more than one page fails
	NODE_OPTIONS=--openssl-legacy-provider node "$SERVERS/node_modules/s3rver/bin/s3rver.js" -d "$DIR/s3" -a 127.0.0.1 -p "$S3RVER_PORT" \
		--silent --configure-bucket "$S3_BUCKET" "${s3_cors[@]}" >"$DIR/logs/s3rver.log" 2>&1 &
	echo $! >"$DIR/s3rver.pid"
	node "$SERVERS/s3-sigv4-proxy.js" "$S3_PORT" "$S3RVER_PORT" "$S3_KEY_ID" "$S3_SECRET" \
		"$DIR/logs/s3-access.log" >"$DIR/logs/s3-proxy.log" 2>&1 &
	echo $! >"$DIR/s3proxy.pid"
	node "$SERVERS/fault-server.js" "$FAULT_PORT" >"$DIR/logs/fault.log" 2>&1 &
	echo $! >"$DIR/fault.pid"

	wait_http "http://127.0.0.1:$DAV_PORT/"
	wait_http --insecure "https://127.0.0.1:$DAVS_PORT/"
	wait_http "http://127.0.0.1:$S3RVER_PORT/"
	wait_http "http://127.0.0.1:$S3_PORT/"
	wait_http "http://127.0.0.1:$FAULT_PORT/_requests/x"

	cat <<VARS
dav_url=http://127.0.0.1:$DAV_PORT
dav_dir=$DIR/dav
dav_log=$DIR/logs/nginx-access.log
davs_url=https://127.0.0.1:$DAVS_PORT
tls_ca_file=$DIR/tls.crt
dav_user=$DAV_USER
dav_password=$DAV_PASSWORD
s3_endpoint=http://127.0.0.1:$S3_PORT
s3rver_url=http://127.0.0.1:$S3RVER_PORT
s3_bucket=$S3_BUCKET
s3_log=$DIR/logs/s3-access.log
s3_key_id=$S3_KEY_ID
s3_secret=$S3_SECRET
fault_url=http://127.0.0.1:$FAULT_PORT
down_url=http://127.0.0.1:$DOWN_PORT
VARS
}

stop() {
	if [ -f "$DIR/nginx.pid" ]; then
		local pid
		pid=$(cat "$DIR/nginx.pid")
		kill -QUIT "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		rm -f "$DIR/nginx.pid"
	fi
	stop_pid_file "$DIR/s3proxy.pid"
	stop_pid_file "$DIR/s3rver.pid"
	stop_pid_file "$DIR/fault.pid"
}

case $cmd in
	start) start ;;
	stop) stop ;;
	*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
