#!/usr/bin/env bash
# README.md is assembled from docs/README.head.md, docs/sections/*.md and docs/README.tail.md:
# edit those, then run `bash docs/assemble_readme.sh` from the repo root.
set -e
{
  cat docs/README.head.md
  echo
  echo "## Contents"
  echo
  for f in trainer data corruptions models sweeps report theory kernels performance; do
    [ -f docs/sections/$f.md ] || continue
    title=$(grep -m1 '^## ' docs/sections/$f.md | sed 's/^## //')
    anchor=$(echo "$title" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9 -]//g; s/ /-/g')
    echo "- [$title](#$anchor)"
  done
  echo
  for f in trainer data corruptions models sweeps report theory kernels performance; do
    [ -f docs/sections/$f.md ] || continue
    cat docs/sections/$f.md
    echo
  done
  cat docs/README.tail.md
} > README.md
