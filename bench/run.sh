#!/bin/sh
# `make bench`: bare engine socket vs sockproxy, side by side. See bench/README.md.
exec python3 "$(dirname "$0")/run.py" "$@"
