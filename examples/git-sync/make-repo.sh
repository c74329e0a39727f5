#!/bin/sh
# Makes the example's git repository: a bare repository DIR/site.git holding a one-page
# site on branch main, and a clone DIR/site-work to edit and push from.
# Usage: make-repo.sh DIR
set -eu
dir=$1
[ -d "$dir/site.git" ] && exit 0
git init -q --bare "$dir/site.git"
git -C "$dir/site.git" symbolic-ref HEAD refs/heads/main
git clone -q "$dir/site.git" "$dir/site-work" 2>/dev/null
cd "$dir/site-work"
git checkout -q -b main
echo "<h1>version 1</h1>" > index.html
git add index.html
git -c user.name=podkit -c user.email=podkit@example.com commit -q -m "version 1"
git push -q origin main
echo "make-repo.sh: $dir/site.git (edit and push from $dir/site-work)"
