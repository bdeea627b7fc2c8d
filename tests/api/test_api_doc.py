"""spec/api.md is executable documentation."""
import doctest
from pathlib import Path


def test_api_examples_run():
    path = Path(__file__).resolve().parents[2] / "spec" / "api.md"
    result = doctest.testfile(str(path), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0
