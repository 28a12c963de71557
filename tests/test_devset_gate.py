"""Gate on the independent dev set (../shared/eval, run by tools/devset.py).

Starts the real assistant with the model `make test` just trained, lets evaluate.py send
the dev set through the REST channel (black-box) and fails below 85 % correct behaviour.
Run alone with `.venv/bin/pytest -q -m devset`. The dev-set messages are never quoted
here or in the log: only the figures are printed.
"""
from __future__ import annotations

import pytest

from tests.support.assistant import latest_model
from tools import devset

pytestmark = pytest.mark.devset


def test_devset_correct_behaviour(tmp_path, capsys):
    try:
        devset.devset_dir()
    except devset.DevsetMissing as exc:
        pytest.fail(f"{exc}. CI puts shared/ beside the clone; elsewhere set ${devset.DEVSET_ENV}.")
    model = latest_model()
    result = devset.evaluate_model(str(model), tmp_path)
    summary, line = result["summary"], devset.figures_line(result)
    with capsys.disabled():  # visible in CI logs also when the test passes
        print(f"\n[devset gate] model {model.name}: {line}")

    missing = [f"{section}.{key}" for _, section, key in devset.FIGURES
               if devset.figure(summary, section, key) is None]
    assert not missing, f"evaluate.py summary lacks {missing}: {line}"
    assert summary["messages"]["n"] > 0 and summary["conversations"]["n"] > 0, line
    success = summary["messages"]["success_pct"]
    assert success >= devset.MIN_SUCCESS_PCT, (
        f"dev set correct behaviour {success} % is below {devset.MIN_SUCCESS_PCT} %; {line}; "
        f"by topic {summary['messages'].get('success_by_topic_pct')}; "
        f"by expected behaviour {summary['messages'].get('success_by_expect_pct')}")
