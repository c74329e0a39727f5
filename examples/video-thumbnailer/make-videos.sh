#!/bin/sh
# Makes small test videos (ffmpeg's test pattern, 5 s at 50 frames/s: 250 frames, so three
# thumbnails each) in the directory given, default ./videos. Each is written under a
# temporary name and renamed, so the source never lists a half-written video.
set -eu
dir=${1:-videos}
count=${2:-3}
mkdir -p "$dir"
i=1
while [ "$i" -le "$count" ]; do
  name="clip-$i.mp4"
  if [ ! -e "$dir/$name" ]; then
    ffmpeg -nostdin -loglevel error -f lavfi -i "testsrc=duration=5:size=160x120:rate=50" \
      -pix_fmt yuv420p -f mp4 "$dir/.$name.part"
    mv "$dir/.$name.part" "$dir/$name"
  fi
  i=$((i + 1))
done
