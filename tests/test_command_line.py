"""Options that take lists: comma-separated values, repeated options, or both."""

import pytest

from fewshot_cli.cli import main


def planned(capsys, tmp_path, *options) -> list[tuple[str, str]]:
    """``(algorithm, cells)`` of each command ``reproduce --plan`` prints."""
    assert main(["reproduce", "--out", str(tmp_path), "--budget", "cpu", *options, "--plan"]) == 0
    return [(line.split("--algorithms ")[1].split()[0], line.split("--cells ")[1].split()[0])
            for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("algorithms", [
    ["--algorithms", "maml,protonet"],
    ["--algorithms", "maml", "--algorithms", "protonet"],
    ["--algorithms", " maml , protonet,maml"],
])
def test_reproduce_takes_algorithms_as_it_takes_cells(algorithms, capsys, tmp_path):
    cells = ["--cells", "5w1s,20w5s"]
    commands = planned(capsys, tmp_path, *algorithms, *cells)
    assert sorted({name for name, _ in commands}) == ["maml", "protonet"]
    assert commands == planned(capsys, tmp_path, "--algorithms", "maml", "--algorithms",
                               "protonet", "--cells", "5w1s", "--cells", "20w5s")


def test_an_unknown_algorithm_in_a_list_is_named(capsys, tmp_path):
    assert main(["reproduce", "--out", str(tmp_path), "--algorithms", "maml,nope", "--plan"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nope' is not one of 'maml', 'protonet'" in err, err
