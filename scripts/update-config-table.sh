#!/usr/bin/env bash
# Regenerates the configuration table in README.md from src/config/keys.rs KEYS
# (the unit test readme_table_matches_the_keys prints the current table).
set -euo pipefail
cd "$(dirname "$0")/.."
table=$(cargo test --quiet --no-default-features --features ssr --lib readme_table 2>&1 \
  | awk '/paste config::markdown_table/{f=1;next} f&&/^\|/{print} f&&/^$/{exit}' || true)
if [ -z "${table}" ]; then echo "table already up to date"; exit 0; fi
python3 - "${table}" <<'PY'
import sys
table = sys.argv[1] + "\n"
text = open("README.md").read()
start = text.index("\n", text.index("<!-- config-table")) + 1
# The table is the run of lines starting with `|` after the marker.
end = start
while text.startswith("|", end):
    end = text.index("\n", end) + 1
open("README.md", "w").write(text[:start] + table + text[end:])
PY
echo "README.md table updated"
