"""benchmarks.engines: one row per meta-batch and query count asked for; bad lists are refused."""

import pytest

from benchmarks import engines


def test_engines_prints_a_row_per_meta_batch_and_query_count(capsys):
    engines.main(
        ["--only", "train", "--cells", "5w1s", "--meta-batch", "1,2", "--queries", "1,2",
         "--iterations", "1"]  # no --threads: it would set torch's threads for later tests
    )
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("5w1s")]
    assert [(row[3], row[4]) for row in rows] == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    for row in rows:  # l2l s/it, vmap s/it, and their ratio
        assert float(row[5]) > 0 and float(row[6]) > 0
        assert float(row[7].rstrip("x")) == pytest.approx(float(row[5]) / float(row[6]), rel=0.1)


@pytest.mark.parametrize(
    "value, message", [("4,eight", "comma-separated whole numbers"), ("4,0", "at least 1")]
)
def test_engines_refuses_a_bad_meta_batch_list(value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        engines.main(["--only", "train", "--cells", "5w1s", "--meta-batch", value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
