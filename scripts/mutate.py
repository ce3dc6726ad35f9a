#!/usr/bin/env python3
"""Check that the tests catch bugs: apply one mutation, run a test selection, restore the file.

    scripts/mutate.py FILE OLD NEW [PYTEST_ARGUMENTS...]
    scripts/mutate.py --all [--list scripts/mutations.toml] [--only TEXT]
    scripts/mutate.py --check [--list scripts/mutations.toml]

The first form replaces the one occurrence of OLD in FILE by NEW, runs
`scripts/run.sh pytest -q -x` with the given arguments, and puts FILE back however the run ends.
Exit status 0 means the mutation was caught (some test failed); 1 means it survived; 2 means OLD
is not in FILE exactly once.

`--all` does that for every mutation in the list (or those whose `what` contains `--only`'s text),
one line each, then prints how many were caught; exit status 0 only when all were. `--check`
runs no test: it only says whether every listed OLD still occurs exactly once and every listed
test file exists, so a list gone stale after a refactor shows in seconds.
Run from the repository root with Python 3.11 or later (tomllib); edits to existing files need no
rebuild (symlink install).
"""

import argparse
import os
import pathlib
import subprocess
import sys
import time

import tomllib

DEFAULT_LIST = pathlib.Path("scripts/mutations.toml")


def mutate(path: pathlib.Path, old: str, new: str, pytest_arguments: list[str], quiet: bool = False) -> int:
    """0 if a test failed under the mutation, 1 if all passed, 2 if OLD is not in `path` once."""
    original = path.read_text()
    if original.count(old) != 1:
        print(f"mutate: the text occurs {original.count(old)} times in {path}, not once", file=sys.stderr)
        return 2
    path.write_text(original.replace(old, new))
    try:
        command = ["scripts/run.sh", "pytest", "-q", "-x", "-p", "no:cacheprovider", *pytest_arguments]
        output = subprocess.DEVNULL if quiet else None
        # No bytecode of the mutant is cached: restored within the same second with the same size,
        # the file would look unchanged to a cached .pyc (Python compares mtime in seconds and size).
        environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        caught = subprocess.run(command, stdout=output, stderr=output, env=environment).returncode != 0
    finally:
        path.write_text(original)
    return 0 if caught else 1


def read_list(list_path: pathlib.Path) -> list[dict]:
    with list_path.open("rb") as file:
        return tomllib.load(file)["mutation"]


def problems(mutation: dict) -> list[str]:
    """Why `mutation` can no longer be applied as written (empty when it can)."""
    path = pathlib.Path(mutation["file"])
    if not path.is_file():
        return [f"{path} does not exist"]
    found = []
    count = path.read_text().count(mutation["old"])
    if count != 1:
        found.append(f"its text occurs {count} times in {path}, not once")
    for test in mutation["tests"]:
        test_file = pathlib.Path(test.split("::")[0])
        if test_file.suffix == ".py" and not test_file.is_file():
            found.append(f"test file {test_file} does not exist")
    return found


def run_all(mutations: list[dict]) -> int:
    caught = 0
    for mutation in mutations:
        started_s = time.monotonic()
        status = mutate(pathlib.Path(mutation["file"]), mutation["old"], mutation["new"], mutation["tests"], quiet=True)
        verdict = {0: "CAUGHT", 1: "SURVIVED", 2: "STALE (text not found once)"}[status]
        caught += status == 0
        print(f"mutate: {verdict} in {time.monotonic() - started_s:.0f} s: {mutation['what']}", flush=True)
    print(f"mutate: {caught} of {len(mutations)} mutations caught")
    return 0 if caught == len(mutations) else 1


def check(mutations: list[dict]) -> int:
    stale = 0
    for mutation in mutations:
        for problem in problems(mutation):
            stale += 1
            print(f"mutate: {mutation['what']}: {problem}")
    print(f"mutate: {len(mutations)} mutations listed, {stale} problems")
    return 0 if stale == 0 else 1


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("--all", "--check"):
        parser = argparse.ArgumentParser(prog="mutate.py", description=__doc__.split("\n\n")[0])
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument("--all", action="store_true", help="run every listed mutation")
        mode.add_argument("--check", action="store_true", help="only check that every mutation still applies")
        parser.add_argument("--list", type=pathlib.Path, default=DEFAULT_LIST)
        parser.add_argument("--only", default="", help="run only the mutations whose `what` contains this text")
        arguments = parser.parse_args(argv)
        mutations = [m for m in read_list(arguments.list) if arguments.only in m["what"]]
        return check(mutations) if arguments.check else run_all(mutations)
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, old, new = pathlib.Path(argv[0]), argv[1], argv[2]
    status = mutate(path, old, new, argv[3:])
    if status != 2:
        print(f"mutate: {'CAUGHT' if status == 0 else 'SURVIVED'}: {path}: {old!r} -> {new!r}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
