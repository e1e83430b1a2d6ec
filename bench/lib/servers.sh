# shellcheck shell=bash
# The storage servers of scripts/storage-servers.sh (nginx WebDAV, s3rver
# behind the SigV4 proxy, the fault server) for the benchmarks that use
# them; sourced after scripts/lib.sh (ROOT_DIR).

# storage_ports DAV S3RVER S3 FAULT DOWN DAVS: the script's default ports,
# exported as PUBLISH_DAV_PORT, PUBLISH_S3RVER_PORT, PUBLISH_S3_PORT,
# PUBLISH_FAULT_PORT, PUBLISH_DOWN_PORT and PUBLISH_DAVS_PORT where the
# environment does not set them already.  Each script has its own, so that
# two benchmarks (or a benchmark and the tests) do not share servers.
storage_ports() {
	export PUBLISH_DAV_PORT=${PUBLISH_DAV_PORT:-$1}
	export PUBLISH_S3RVER_PORT=${PUBLISH_S3RVER_PORT:-$2}
	export PUBLISH_S3_PORT=${PUBLISH_S3_PORT:-$3}
	export PUBLISH_FAULT_PORT=${PUBLISH_FAULT_PORT:-$4}
	export PUBLISH_DOWN_PORT=${PUBLISH_DOWN_PORT:-$5}
	export PUBLISH_DAVS_PORT=${PUBLISH_DAVS_PORT:-$6}
}

# servers_start DIR: starts the servers in DIR and reads the settings they
# print (dav_url, s3_endpoint, s3_bucket, s3_key_id, ...) into the global
# associative array S.
servers_start() {
	declare -gA S
	local k v
	while IFS='=' read -r k v; do S[$k]=$v; done < <(bash "$ROOT_DIR/scripts/storage-servers.sh" start "$1")
}

# servers_stop DIR: stops them by their pids (never fails: it runs on exit).
servers_stop() {
	bash "$ROOT_DIR/scripts/storage-servers.sh" stop "$1" || true
}

# cleanup_servers_and_cluster WORK: the exit trap of a script with servers
# in WORK/servers and a cluster in WORK/pg; removes WORK.
cleanup_servers_and_cluster() {
	servers_stop "$1/servers"
	cluster_stop "$1/pg"
	rm -rf "$1"
}
