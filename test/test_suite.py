"""How `make test` runs the suite (scripts/test.sh): its second pass collects only the modules
listed in TIMING_MODULES, so a `timing` test anywhere else would silently never run."""

import pathlib
import re

TEST_DIRECTORY = pathlib.Path(__file__).resolve().parent
TEST_SCRIPT = TEST_DIRECTORY.parent / "scripts" / "test.sh"


def timing_modules_of_the_script() -> set[str]:
    match = re.search(r"^TIMING_MODULES=\((.*)\)$", TEST_SCRIPT.read_text(), re.MULTILINE)
    assert match, "scripts/test.sh has no TIMING_MODULES=(...) line"
    return set(match.group(1).split())


def test_every_module_with_timing_tests_is_collected_by_the_timing_pass():
    marked = {
        f"test/{path.name}"
        for path in TEST_DIRECTORY.glob("test_*.py")
        if re.search(r"^@pytest\.mark\.timing\b|^pytestmark = .*pytest\.mark\.timing", path.read_text(), re.MULTILINE)
    }
    assert marked, "no module has timing tests: the pattern above no longer finds them"
    assert marked == timing_modules_of_the_script()
