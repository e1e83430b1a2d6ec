#!/usr/bin/env bash
#
# make_tiles.sh ROOT: writes the built tiles of the demo project "campus",
# version 3 (demo/sample_project.sql), under ROOT:
#
#     ROOT/production/campus/builds/v3/tiles/{z}/{x}/{y}.png    for z = 0..2 (21 tiles)
#
# ROOT is the directory of a file:// storage target (the tileset's
# source_path, production/campus/builds/v3/tiles, is relative to it: the
# build location {env}/{slug}/builds/v{N}/tiles of production).
#
# Each tile is a real 256x256 PNG (one flat land-coloured palette entry,
# #f2efe9) followed, after its IEND chunk, by one line of text naming the
# tile, so that every tile has its own content and checksum.  Image readers
# ignore bytes after IEND.  The content is deterministic, and the manifest in
# publish.tiles (byte_size, sha256) is computed by sample_project.sql from
# the very same bytes:
#
#     decode(TILE_PNG_HEX, 'hex') || convert_to(format(E'campus v3 tile %s/%s/%s\n', z, x, y), 'UTF8')
#
# Keep TILE_PNG_HEX and the trailer line identical in both files.
#
set -euo pipefail
export LC_ALL=C

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 ROOT" >&2
	exit 2
fi
root=$1
tiles=$root/production/campus/builds/v3/tiles

# The 103-byte PNG shared by every tile (IHDR 256x256 1-bit palette, PLTE,
# IDAT, IEND; CRCs included).
TILE_PNG_HEX=89504e470d0a1a0a0000000d494844520000010000000100010300000066bc3a2500000003504c5445f2efe9110a2f9b0000001f4944415478daedc1010d000000c2a0f74f6d0e37a00000000000000000be0d2100000160e49d970000000049454e44ae426082

# The same bytes as printf escapes (\xHH), built once.
png_escaped=
for ((i = 0; i < ${#TILE_PNG_HEX}; i += 2)); do
	png_escaped+="\\x${TILE_PNG_HEX:i:2}"
done

for z in 0 1 2; do
	n=$((1 << z))
	for ((x = 0; x < n; x++)); do
		mkdir -p "$tiles/$z/$x"
		for ((y = 0; y < n; y++)); do
			{
				printf '%b' "$png_escaped"
				printf 'campus v3 tile %d/%d/%d\n' "$z" "$x" "$y"
			} >"$tiles/$z/$x/$y.png"
		done
	done
done

echo "wrote 21 tiles under $tiles"
