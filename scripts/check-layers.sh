#!/usr/bin/env bash
# Checks that calls between the folders of src/ run one way (see
# src/publish.h and docs/architecture.md), from the built objects' symbol
# tables: every symbol an object uses (nm -u) is looked up in the object
# that defines it, and the pair of folders must be an allowed one below.
# Prints the table of calls (caller folder x callee folder: how many
# distinct symbols) and each call against the order; exits 1 if any.
#
# Usage: scripts/check-layers.sh [SRC_DIR]   (after make; default src/)
set -euo pipefail

SRC=${1:-$(cd "$(dirname "$0")/.." && pwd)/src}

# Who may call whom.  "top" is src/*.c but guc.c (module load, the SQL
# entry points); "guc" is src/guc.c (the settings, read by everyone).
# ipc/ and util/ are leaves anyone may call; only storage/ calls net/.
declare -A ALLOWED=(
	[top]="bgw jobs tile release queue storage ipc util guc"
	[bgw]="jobs queue ipc util guc"
	[jobs]="tile release queue storage ipc util guc"
	[tile]="release queue storage util guc"
	[release]="util guc"
	[queue]="ipc util guc"
	[storage]="net ipc util guc"
	[net]="util guc"
	[ipc]="guc"
	[util]="guc"
	[guc]=""
)
ORDER="top bgw jobs tile release queue storage net ipc util guc"

layer_of() {
	local rel=${1#"$SRC"/}
	case $rel in
		guc.o) echo guc ;;
		*/*) echo "${rel%%/*}" ;;
		*) echo top ;;
	esac
}

objects=$(find "$SRC" -name '*.o' | sort)
if [ -z "$objects" ]; then
	echo "check-layers: no objects under $SRC (run make first)" >&2
	exit 2
fi

defs=$(mktemp)
uses=$(mktemp)
trap 'rm -f "$defs" "$uses"' EXIT
for o in $objects; do
	l=$(layer_of "$o")
	for folder in $ORDER; do
		[ "$folder" = "$l" ] && continue 2
	done
	echo "check-layers: $o is in no known folder ($l)" >&2
	exit 2
done
for o in $objects; do
	l=$(layer_of "$o")
	nm --defined-only -g "$o" | awk -v l="$l" -v o="${o#"$SRC"/}" \
		'NF == 3 {print $3, l, o}' >>"$defs"
	nm -u "$o" | awk -v l="$l" -v o="${o#"$SRC"/}" '{print $2, l, o}' >>"$uses"
done
sort -o "$defs" "$defs"
sort -o "$uses" "$uses"

# symbol caller_layer caller_object callee_layer callee_object
calls=$(join "$uses" "$defs" | awk '$2 != $4')

bad=0
printf '%-8s' "calls"
for callee in $ORDER; do printf '%8s' "$callee"; done
printf '\n'
for caller in $ORDER; do
	printf '%-8s' "$caller"
	for callee in $ORDER; do
		n=$(echo "$calls" | awk -v a="$caller" -v b="$callee" \
			'$2 == a && $4 == b {print $1}' | sort -u | grep -c . || true)
		if [ "$n" -eq 0 ]; then
			printf '%8s' "."
		elif [[ " ${ALLOWED[$caller]} " == *" $callee "* ]]; then
			printf '%8s' "$n"
		else
			printf '%8s' "$n!"
			bad=1
		fi
	done
	printf '\n'
done

# a backend is named only in its folder's table (storage/storage.c)
named=$(grep -rnE 'storage_[a-z0-9]+_backend' "$SRC" --include='*.c' --include='*.h' |
	grep -v "^$SRC/storage/" || true)
if [ -n "$named" ]; then
	echo "a storage backend named outside src/storage/:"
	echo "$named" | sed 's/^/  /'
	bad=1
fi

if [ "$bad" -ne 0 ]; then
	echo "calls against the order (caller -> callee: symbol):"
	echo "$calls" | while read -r sym cl co el eo; do
		[ -n "$sym" ] || continue
		[[ " ${ALLOWED[$cl]} " == *" $el "* ]] || echo "  $co -> $eo: $sym"
	done | sort -u
	echo "layers: FAILED"
	exit 1
fi
echo "layers: ok"
