#!/usr/bin/env python3
"""Rewrites the option tables in README.md from the binaries' --help-markdown, so the docs
say what the code does (tests/system/stack/test_docs.py checks they agree).

    scripts/readme-config.py [BUILD_DIR]
"""
import re
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
build = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "build"
readme = root / "README.md"
text = readme.read_text()
for d in ("gateway", "processor", "projector", "notifier", "archiver", "api", "registry"):
    table = subprocess.run([str(build / d / f"kchat-{d}"), "--help-markdown"], check=True,
                           capture_output=True, text=True).stdout.strip()
    # the first table under the heading (after any paragraphs), up to its last row
    pattern = re.compile(rf"(### kchat-{d}\n\n(?:[^|#\n][^\n]*\n|\n)*)(\|[^\n]*\n)+")
    text, n = pattern.subn(lambda m: m.group(1) + table + "\n", text, count=1)
    if n != 1:
        sys.exit(f"README.md: no table under '### kchat-{d}'")
usage = subprocess.run([str(build / "ctl" / "kchatctl"), "--help"], check=True,
                       capture_output=True, text=True).stdout.rstrip("\n")
pattern = re.compile(r"(### kchatctl\n.*?```\n)(.*?)(\n```)", re.S)
text, n = pattern.subn(lambda m: m.group(1) + usage + m.group(3), text, count=1)
if n != 1:
    sys.exit("README.md: no usage block under '### kchatctl'")
readme.write_text(text)
