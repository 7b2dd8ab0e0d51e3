"""The docs stay true to the code: the README's configuration tables are what the binaries
print, and the spec files parse."""
import subprocess

import pytest

from kchat_testkit.stack import BUILD, DAEMONS, ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_readme_has_each_daemons_option_table(name):
    out = subprocess.run([str(DAEMONS[name]["binary"]), "--help-markdown"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() in README, f"README's table for kchat-{name} is out of date"


def test_readme_has_kchatctl_usage():
    out = subprocess.run([str(BUILD / "ctl" / "kchatctl"), "--help"], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        if line.strip().startswith("--"):
            assert line.strip() in README, line


def test_readme_quick_start_has_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make run" in quick and "make test" in quick
