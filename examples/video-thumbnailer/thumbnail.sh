#!/bin/sh
# The worker of chapter 10's video thumbnailer: one PNG for every 100 frames of the video
# named in the work item, as the book's text describes (its command line,
# `ffmpeg -i ${INPUT_FILE} -frames:v 100 thumb.png`, would instead stop after 100 frames of
# output, all written over one file). The thumbnails appear together in $THUMBS/<video>/.
set -eu
video=$(python3 -c 'import json, os; print(json.load(open(os.environ["WORK_ITEM_FILE"]))["path"])')
name=$(basename "$video" .mp4)
out="$THUMBS/$name"
mkdir -p "$THUMBS"
work=$(mktemp -d "$THUMBS/.work-XXXXXX")
trap 'rm -rf "$work"' EXIT
ffmpeg -nostdin -loglevel error -i "$video" \
  -vf 'select=not(mod(n\,100))' -fps_mode vfr "$work/thumb%d.png"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
echo "$name: $(ls "$out" | wc -l) thumbnails"
