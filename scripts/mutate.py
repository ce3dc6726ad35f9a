#!/usr/bin/env python3
"""Check that a test catches a bug: apply one mutation, run a test selection, restore the file.

    scripts/mutate.py FILE OLD NEW [PYTEST_ARGUMENTS...]

Replaces the one occurrence of OLD in FILE by NEW, runs `scripts/run.sh pytest -q -x` with the
given arguments, and puts FILE back however the run ends. Exit status 0 means the mutation was
caught (some test failed); 1 means it survived; 2 means OLD is not in FILE exactly once.
Run from the repository root; edits to existing files need no rebuild (symlink install).
"""

import pathlib
import subprocess
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, old, new, pytest_arguments = pathlib.Path(argv[0]), argv[1], argv[2], argv[3:]
    original = path.read_text()
    if original.count(old) != 1:
        print(f"mutate: the text occurs {original.count(old)} times in {path}, not once", file=sys.stderr)
        return 2
    path.write_text(original.replace(old, new))
    try:
        command = ["scripts/run.sh", "pytest", "-q", "-x", "-p", "no:cacheprovider", *pytest_arguments]
        caught = subprocess.run(command).returncode != 0
    finally:
        path.write_text(original)
    print(f"mutate: {'CAUGHT' if caught else 'SURVIVED'}: {path}: {old!r} -> {new!r}")
    return 0 if caught else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
