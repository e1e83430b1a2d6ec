#!/usr/bin/env bash
# Installs what publish needs on Debian 12, as root, by what it is for:
#
#   install-deps.sh demo       building publish and running the demo (file://)
#   install-deps.sh servers    the local storage servers (nginx WebDAV, s3rver):
#                              the demo's --target s3|webdav, and the tests
#   install-deps.sh test       all of the above and the test tools (pgTAP, Perl
#                              TAP, gdb, strace, Chromium for the viewer test,
#                              pg_bsd_indent and binutils for the static checks)
#   install-deps.sh            the same as test
#
# Idempotent: packages already present are skipped, so re-running is cheap.
set -euo pipefail

DEMO=(
	postgresql-15 postgresql-client-15
	postgresql-server-dev-15        # pg_config, PGXS, server headers, PostgreSQL::Test::Cluster
	libcurl4-openssl-dev            # storage backends (HTTP/WebDAV/S3)
	libjson-c-dev                   # release.json builder
	libvips-dev                     # tile builder (libvips 8.14: dzsave, png/jpeg/tiff/webp)
	zlib1g-dev                      # gzip of release.json (option compress)
	pkg-config
	make gcc
	python3                         # the demo serves the map viewer with python3 -m http.server
)
SERVERS=(
	nginx                           # WebDAV server (its dav module is built in)
	libnginx-mod-http-dav-ext       # PROPFIND for it: listings of tile folders
	nodejs                          # s3rver, the SigV4 check, the fault server
	curl openssl                    # waiting for the servers; their certificate and htpasswd line
)
TEST=(
	libvips-tools                   # tests, bench: the vips command makes and reads test images
	postgresql-15-pgtap             # pgTAP extension
	postgresql-15-cron              # pg_cron: the schedule recipe's test (t/023)
	libtap-parser-sourcehandler-pgtap-perl  # pg_prove
	libipc-run-perl                 # Perl TAP (PostgreSQL::Test::Cluster)
	strace                          # the order of the file:// target's syncs (t/009)
	gdb                             # a cancel signal held back until its job ended (t/012)
	chromium                        # the map viewer test (test/browser), headless
	fonts-dejavu-core               # its labels and popups have a font to render with
	pg-bsd-indent                   # make indent, and its check (scripts/indent.sh)
	binutils                        # nm, objdump: scripts/check-layers.sh, make typedefs
)

want_servers=false
PKGS=()
[ $# -gt 0 ] || set -- test
for group in "$@"; do
	case $group in
		demo) PKGS+=("${DEMO[@]}") ;;
		servers) PKGS+=("${SERVERS[@]}"); want_servers=true ;;
		test) PKGS+=("${DEMO[@]}" "${SERVERS[@]}" "${TEST[@]}"); want_servers=true ;;
		*) echo "usage: $0 [demo|servers|test]..." >&2; exit 2 ;;
	esac
done

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# npm: Debian's package, unless a nodejs that brings its own is installed
if $want_servers && ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi

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
