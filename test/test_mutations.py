"""The mutation list (`scripts/mutations.toml`) stays applicable: every bug it describes can still
be introduced as written, so `scripts/mutate.py --all` still tests what it says it tests."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_listed_mutation_still_applies_to_the_code():
    result = subprocess.run(
        [sys.executable, "scripts/mutate.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith("mutations listed, 0 problems")
