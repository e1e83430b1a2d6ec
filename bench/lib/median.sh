# shellcheck shell=bash
# median "V1 V2 ...": the median of a space-separated list of numbers (the
# mean of the middle two when their count is even), or "-" when it is empty.
median() {
	tr ' ' '\n' <<<"$1" | { grep -v '^$' || true; } | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
