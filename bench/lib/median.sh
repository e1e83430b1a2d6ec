# shellcheck shell=bash
# median [V...]: the median of the numbers given (arguments, each one or
# more separated by spaces; without arguments, stdin, one a line): the mean
# of the middle two when their count is even, "-" when there are none.
median() {
	if [ $# -gt 0 ]; then printf '%s\n' "$@" | tr ' ' '\n'; else cat; fi |
		{ grep -v '^$' || true; } | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
