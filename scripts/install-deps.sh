#!/usr/bin/env bash
# Installs what building and testing publish needs on Debian 12, as root.
# Idempotent: packages already present are skipped, so re-running is cheap.
set -euo pipefail

PKGS=(
	postgresql-15 postgresql-client-15
	postgresql-server-dev-15        # pg_config, PGXS, server headers, PostgreSQL::Test::Cluster
	libcurl4-openssl-dev            # storage backends (HTTP/WebDAV/S3)
	libjson-c-dev                   # release.json builder
	libvips-dev                     # tile builder (libvips 8.14: dzsave, png/jpeg/tiff/webp)
	libvips-tools                   # tests, bench: the vips command makes and reads test images
	pkg-config
	postgresql-15-pgtap             # pgTAP extension
	libtap-parser-sourcehandler-pgtap-perl  # pg_prove
	libipc-run-perl                 # Perl TAP (PostgreSQL::Test::Cluster)
	make gcc
	nginx                           # tests: WebDAV server (its dav module is built in)
	nodejs                          # tests: s3rver, the SigV4 check, the fault server
	curl openssl                    # tests: fetching objects back; the htpasswd line
	strace                          # tests: the order of the file:// target's syncs (t/009)
	gdb                             # tests: a cancel signal held back until its job ended (t/012)
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# npm: Debian's package, unless a nodejs that brings its own is installed
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
