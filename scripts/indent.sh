#!/usr/bin/env bash
# Formats the C code under src/ the way PostgreSQL's pgindent does: the
# same pg_bsd_indent (Debian's pg-bsd-indent package) with pgindent's
# options, pre- and post-processing, and a typedefs list for this tree
# (scripts/typedefs.list).
#
#   scripts/indent.sh             format src/ in place (make indent)
#   scripts/indent.sh --check     change nothing; show what formatting would
#                                 change and exit 1 if anything
#   scripts/indent.sh --typedefs  rewrite scripts/typedefs.list (after make)
#
# typedefs.list is what pgindent's own list is for PostgreSQL: every type
# name, so that "Foo *bar" is read as a declaration.  It holds the typedefs
# the built objects' debug information names (PostgreSQL's, libcurl's,
# json-c's, ..., as this tree uses them: the buildfarm extracts
# PostgreSQL's list the same way) and those declared under src/.  Run
# --typedefs after adding a type, and commit the list with the code.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=$ROOT/src
TYPEDEFS=$ROOT/scripts/typedefs.list
INDENT=${PG_BSD_INDENT:-pg_bsd_indent}
OPTS="-bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 -nfc1 -i4 -l79
	-lp -lpl -nip -npro -sac -tpg -ts4"
# names pgindent never treats as types (src/tools/pgindent/pgindent), and
# text, a variable's name here (the tree never uses PostgreSQL's type text)
EXCLUDED='^(ANY|FD_SET|U|abs|allocfunc|boolean|date|digit|ilist|interval|iterator|other|pointer|printfunc|reference|string|text|timestamp|type|wrap)$'

typedefs() {
	local objs
	objs=$(find "$SRC" -name '*.o')
	if [ -z "$objs" ]; then
		echo "indent.sh: build first (make), --typedefs reads the objects" >&2
		exit 2
	fi
	{
		for o in $objs; do
			objdump -W "$o" | awk '/DW_TAG_typedef/ {t = 1; next}
				t && /DW_AT_name/ {print $NF; t = 0}'
		done
		# declared here: "} Name;" after a typedef struct, "typedef ... Name;"
		find "$SRC" -name '*.[ch]' -exec cat {} + |
			grep -oE '^\}[[:space:]]*[A-Za-z_][A-Za-z0-9_]*;' | tr -d '}; \t'
		find "$SRC" -name '*.[ch]' -exec cat {} + |
			grep -E '^typedef ' | grep -oE '[A-Za-z_][A-Za-z0-9_]*;$' | tr -d ';'
		find "$SRC" -name '*.[ch]' -exec cat {} + |
			grep -oE '^typedef [^;(]*\(\*[A-Za-z_][A-Za-z0-9_]*\)' |
			grep -oE '[A-Za-z_][A-Za-z0-9_]*\)$' | tr -d ')'
		echo bool
	} | grep -vE "$EXCLUDED" | LC_ALL=C sort -u
}

if [ "${1:-}" = "--typedefs" ]; then
	typedefs >"$TYPEDEFS.new"
	mv "$TYPEDEFS.new" "$TYPEDEFS"
	echo "indent.sh: $(wc -l <"$TYPEDEFS") typedefs in $TYPEDEFS"
	exit 0
fi

if ! command -v "$INDENT" >/dev/null; then
	echo "indent.sh: $INDENT not found (Debian: apt-get install pg-bsd-indent)" >&2
	exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# format FILE OUT: OUT is FILE as pgindent leaves it
format() {
	# pre: keep dash-protected block comments as they are; hide bytes
	# past ASCII, which pg_bsd_indent mangles
	perl -pe 's!/\* +---!/*---X_X!g;
		s/([\x80-\xff]+)/"__U8_" . unpack("H*", $1) . "__"/ge' "$1" >"$work/in.c"
	(cd "$work" && "$INDENT" $OPTS -U"$TYPEDEFS" in.c out.c >"$work/err" 2>&1) ||
		{ echo "indent.sh: $1: $(cat "$work/err")" >&2; return 1; }
	if [ -s "$work/err" ]; then
		echo "indent.sh: $1: $(cat "$work/err")" >&2
		return 1
	fi
	# post: undo the protection; one space before '*' of a return type;
	# a tab between run-together comments
	perl -pe 's!/\*---X_X!/* ---!g; s!^([A-Za-z_]\S*)[ \t]+\*$!$1 *!;
		s!\*/(/\*.*\*/)$!*/\t$1!; s/__U8_([0-9a-f]+)__/pack("H*", $1)/ge' \
		"$work/out.c" >"$2"
}

changed=0
while IFS= read -r f; do
	format "$f" "$work/formatted" || { changed=1; continue; }
	if ! cmp -s "$f" "$work/formatted"; then
		changed=1
		if [ "${1:-}" = "--check" ]; then
			diff -u "$f" "$work/formatted" | sed "s|$work/formatted|${f#"$ROOT"/} (formatted)|"
		else
			cp "$work/formatted" "$f"
			echo "indent.sh: formatted ${f#"$ROOT"/}"
		fi
	fi
done < <(find "$SRC" -name '*.[ch]' | LC_ALL=C sort)

if [ "${1:-}" = "--check" ]; then
	if [ "$changed" -ne 0 ]; then
		echo "indent: FAILED (run make indent)"
		exit 1
	fi
	echo "indent: ok"
fi
