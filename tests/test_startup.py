"""Start-up stays light: the modules ``fewshot --help`` and ``fewshot predict`` with a ProtoNet
import (a guard without timing; ``benchmarks.startup`` measures the seconds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from fewshot_cli.algorithms import registry
from fewshot_cli.run.checkpoint import save_checkpoint, save_config
from fewshot_cli.run.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "learn2learn", "pandas", "matplotlib", "gym", "scipy")
REPORT = (f"import sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")


def heavy_modules_after(code: str) -> list[str]:
    """The heavy top-level packages a fresh interpreter holds after running ``code``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])


def test_help_imports_nothing_heavy():
    # Every command's --help, and the package itself: not even torch.
    code = ("from fewshot_cli.cli import cli\n"
            "for args in [['--help'], *[[name, '--help'] for name in cli.commands]]:\n"
            "    try:\n"
            "        cli.main(args, prog_name='fewshot', standalone_mode=False)\n"
            "    except SystemExit:\n"
            "        pass")
    assert heavy_modules_after(code) == []


def test_protonet_predict_needs_neither_learn2learn_nor_plots(tiny_root, tmp_path):
    config = TrainConfig("protonet", ways=3, shots=1, queries=1, test_ways=3, device="cpu").resolved()
    run = tmp_path / "run"
    run.mkdir()
    save_config(run, config)
    model = registry.get("protonet").build_model(config)
    save_checkpoint(run / "last.pt", {"algorithm": "protonet", "iteration": 0,
                                      "model": model.state_dict()})
    for part, pick in (("support", slice(0, 2)), ("query", slice(2, 4))):
        for character in ("Omega/character01", "Psi/character02"):
            folder = tmp_path / part / character.replace("/", "-")
            folder.mkdir(parents=True)
            for png in sorted((tiny_root / "images_evaluation" / character).glob("*.png"))[pick]:
                shutil.copy(png, folder)
    out = tmp_path / "predictions.csv"
    code = ("from fewshot_cli.cli import main\n"
            f"main(['predict', {str(run)!r}, '--support', {str(tmp_path / 'support')!r}, "
            f"'--query', {str(tmp_path / 'query')!r}, '--csv', {str(out)!r}, '--device', 'cpu'])"
            " == 0 or exit(1)")
    loaded = heavy_modules_after(code)
    assert out.is_file() and len(out.read_text().splitlines()) == 1 + 4
    assert "torch" in loaded  # the check sees what is imported
    assert [m for m in loaded if m in ("learn2learn", "gym", "scipy", "matplotlib", "torchvision")] == []


def test_learn2learn_is_imported_without_gym_s_notice_alone():
    def stderr_of(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stderr

    assert "Gym has been unmaintained" in stderr_of("import learn2learn")
    assert stderr_of("from fewshot_cli.l2l import l2l") == ""
