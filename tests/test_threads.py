"""``--threads N`` bounds torch's CPU threads, next to ``--device``."""

import pytest
import torch

from fewshot_cli.cli import main
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.training import train


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("threads") / "run"
    train(TrainConfig("protonet", ways=5, queries=2, test_ways=3, test_queries=2, iterations=1,
                      val_every=1, val_episodes=2, device="cpu"), run, data=tiny_data,
          progress=False)
    return run


@pytest.mark.parametrize("command", ["train", "eval", "predict", "reproduce"])
def test_every_command_with_a_device_takes_threads(command, capsys):
    assert main([*command.split(), "--help"]) == 0
    text = capsys.readouterr().out
    assert "--threads N" in text and "--device" in text


def test_eval_runs_with_the_threads_asked_for(run, tiny_root, monkeypatch, restore_threads, capsys):
    from fewshot_cli.run import evaluation

    seen = []
    real = evaluation.evaluate

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", spy)
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    torch.set_num_threads(2)
    assert main(["eval", str(run), "--episodes", "2", "--quiet", "--threads", "1"]) == 0
    assert seen == [1]
