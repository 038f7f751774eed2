"""Every hostile case (``cases_*.py``) as a test: each must end OK (harness.py says what that means)."""

import pytest

from tests.hostile.harness import all_cases, run_case


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: c.id)
def test_hostile_case(case, tmp_path):
    verdict, message = run_case(case, tmp_path)
    assert verdict == "OK", f"{verdict}: {message}"
