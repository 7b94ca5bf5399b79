"""Bad input to every command ends in one line ``error: ...`` on stderr and exit code 2.

Each case runs the command line's real entry point (``fewshot_cli/__main__.py``, what
``python -m fewshot_cli`` runs) in a process of its own, and the checks read that process's
exit status and the bytes it wrote to its stderr, so a traceback cannot hide.

A fresh interpreter spends about 4 s of CPU importing torch and learn2learn, which for this many
cases is minutes on a busy 2-core machine. So, by default, one helper interpreter imports
``fewshot_cli.cli`` once and forks a child per case; the child points its stdout and stderr at
files and runs ``fewshot_cli.__main__`` as ``python -m`` would (an uncaught exception goes through
``sys.excepthook``, the interpreter's own traceback printer). ``FEWSHOT_TEST_SPAWN=1`` runs every
case as a fresh ``python -m fewshot_cli ...`` instead (slow, and equivalent apart from the
imports; the tests in test_safety.py and test_interrupt.py always spawn fresh interpreters).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import make_tiny_omniglot
from PIL import Image
from test_mini_imagenet import write_pickles

from fewshot_cli.data.mini_imagenet import load_mini_imagenet
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.results import append_row
from fewshot_cli.run.training import train

TINY = dict(ways=5, queries=2, test_ways=3, test_queries=2, iterations=2, val_every=1,
            val_episodes=1, device="cpu")
TRAIN = ["train", "protonet", "--ways", "5", "--test-ways", "3", "--queries", "2",
         "--test-queries", "2", "--iterations", "2", "--val-every", "1", "--val-episodes", "1",
         "--device", "cpu", "--quiet", "--out", "{work}/new-{id}"]
EVAL = ["eval", "{proto}", "--episodes", "2", "--quiet"]
PREDICT = ["--support", "{support}", "--query", "{query}"]
REPRODUCE = ["reproduce", "--out", "{work}/new-{id}", "--device", "cpu", "--quiet"]


def case(id_: str, args: list[str], names: str, env: dict[str, str] | None = None):
    """One row: the command line (``{placeholders}`` filled by ``paths``), a fragment the error
    line must contain (so that it names the problem) and environment variables to change."""
    return pytest.param(args, names, env or {}, id=id_)


CASES = [
    # fewshot data
    case("data-missing-root", ["data", "--data-root", "{work}/nowhere"], "no Omniglot found"),
    case("data-empty-root", ["data", "--data-root", "{empty}"], "no Omniglot found"),
    case("data-partial-root", ["data", "--data-root", "{partial}"], "images_evaluation/ is missing"),
    case("data-corrupt-png", ["data", "--data-root", "{corrupt}"], "{bad_png}"),
    case("data-split-unknown-character",
         ["data", "--split", "vinyals", "--split-dir", "{bad_splits}"], "Nope/character99"),
    case("data-cache-under-file", ["data", "--data-root", "{fresh}"], "{file}",
         env={"FEWSHOT_CACHE": "{file}/cache"}),
    # fewshot train
    case("train-missing-root", TRAIN + ["--data-root", "{work}/nowhere"], "no Omniglot found"),
    case("train-empty-root", TRAIN + ["--data-root", "{empty}"], "no Omniglot found"),
    case("train-partial-root", TRAIN + ["--data-root", "{partial}"], "images_evaluation/ is missing"),
    case("train-corrupt-png", TRAIN + ["--data-root", "{corrupt}"], "{bad_png}"),
    case("train-split-unknown-character",
         TRAIN + ["--split", "vinyals", "--split-dir", "{bad_splits}"], "Nope/character99"),
    case("train-ways-over-classes", TRAIN + ["--ways", "50"], "ways (50) exceeds"),
    case("train-test-ways-over-val-classes", TRAIN + ["--test-ways", "10"], "ways (10) exceeds"),
    case("train-shots-plus-queries", TRAIN + ["--shots", "10", "--queries", "11"],
         "shots + queries (10 + 11)"),
    case("train-test-shots-plus-queries", TRAIN + ["--test-queries", "20"], "shots + queries (1 + 20)"),
    case("train-zero-ways", TRAIN + ["--ways", "0"], "--ways"),
    case("train-negative-shots", TRAIN + ["--shots", "-1"], "--shots"),
    case("train-zero-queries", TRAIN + ["--queries", "0"], "--queries"),
    case("train-zero-iterations", TRAIN + ["--iterations", "0"], "--iterations"),
    case("train-negative-test-shots", TRAIN + ["--test-shots", "-2"], "--test-shots"),
    case("train-zero-val-every", TRAIN + ["--val-every", "0"], "--val-every"),
    case("train-zero-val-episodes", TRAIN + ["--val-episodes", "0"], "--val-episodes"),
    case("train-negative-lr-halve-every", TRAIN + ["--lr-halve-every", "-5"], "--lr-halve-every"),
    case("train-zero-lr", TRAIN + ["--lr", "0"], "--lr"),
    case("train-negative-lr", TRAIN + ["--lr", "-0.01"], "--lr"),
    case("train-nan-lr", TRAIN + ["--lr", "nan"], "--lr"),
    case("train-zero-time-limit", TRAIN + ["--time-limit", "0"], "--time-limit"),
    case("train-maml-negative-inner-lr",
         ["train", "maml", "--out", "{work}/new-{id}", "--inner-lr", "-0.4"], "--inner-lr"),
    case("train-maml-zero-meta-batch",
         ["train", "maml", "--out", "{work}/new-{id}", "--meta-batch", "0"], "--meta-batch"),
    case("train-maml-zero-inner-steps",
         ["train", "maml", "--out", "{work}/new-{id}", "--inner-steps", "0"], "--inner-steps"),
    *[case(f"train-{name}-{problem}", ["train", name, "--out", "{work}/new-{id}", *args], flag)
      for name in ("metasgd", "anil")
      for problem, args, flag in (
          ("negative-inner-lr", ["--inner-lr", "-0.4"], "--inner-lr"),
          ("zero-meta-batch", ["--meta-batch", "0"], "--meta-batch"),
          ("zero-inner-steps", ["--inner-steps", "0"], "--inner-steps"),
          ("zero-test-inner-steps", ["--test-inner-steps", "0"], "--test-inner-steps"))],
    case("train-resume-missing-run", ["train", "protonet", "--resume", "{work}/nowhere"],
         "config.json not found"),
    case("train-resume-other-algorithm", ["train", "maml", "--resume", "{proto}"], "protonet run"),
    # MAML, Meta-SGD and ANIL share options and (MAML and ANIL) a network: the name decides.
    case("train-resume-maml-as-metasgd", ["train", "metasgd", "--resume", "{maml}"], "maml run"),
    case("train-resume-anil-as-maml", ["train", "maml", "--resume", "{anil}"], "anil run"),
    case("train-resume-protonet-as-anil", ["train", "anil", "--resume", "{proto}"], "protonet run"),
    case("train-resume-truncated-checkpoint", ["train", "protonet", "--resume", "{truncated_last}"],
         "cannot load checkpoint"),
    case("train-resume-without-checkpoint", ["train", "protonet", "--resume", "{no_checkpoint}"],
         "last.pt not found"),
    case("train-resume-config-not-json", ["train", "protonet", "--resume", "{config_not_json}"],
         "not valid JSON"),
    case("train-resume-config-not-object", ["train", "protonet", "--resume", "{config_list}"],
         "not a run configuration"),
    # Options of another algorithm: refused the same way in train, eval and predict.
    case("train-protonet-first-order", TRAIN + ["--first-order"],
         "--first-order applies to maml, metasgd, anil only, not to protonet"),
    case("train-protonet-inner-lr", TRAIN + ["--inner-lr", "0.5"],
         "--inner-lr applies to maml, metasgd, anil only, not to protonet"),
    case("train-protonet-meta-batch", TRAIN + ["--meta-batch", "3"],
         "--meta-batch applies to maml, metasgd, anil only, not to protonet"),
    case("train-protonet-inner-steps", TRAIN + ["--inner-steps", "2"],
         "--inner-steps applies to maml, metasgd, anil only, not to protonet"),
    case("train-protonet-test-inner-steps", TRAIN + ["--test-inner-steps", "2"],
         "--test-inner-steps applies to maml, metasgd, anil only, not to protonet"),
    case("train-out-under-file", TRAIN[:-1] + ["{file}/run"], "{file}"),
    case("train-out-is-file", TRAIN[:-1] + ["{file}"], "is a file"),
    case("train-one-way", TRAIN + ["--ways", "1"], "--ways must be at least 2"),
    case("train-one-test-way", TRAIN + ["--test-ways", "1"], "--test-ways must be at least 2"),
    case("train-init-from-not-a-checkpoint", TRAIN + ["--init-from", "{file}"],
         "{file}: not a PyTorch checkpoint at all"),
    case("train-init-from-the-run-it-replaces", TRAIN[:-1] + ["{proto_copy}", "--overwrite",
                                                             "--init-from", "{proto_copy}"],
         "--init-from {proto_copy} is in --out {proto_copy}"),
    # --nproc: refused before any process starts
    case("train-nproc-existing-run", ["train", "maml", "--out", "{maml}", "--nproc", "2",
                                      "--meta-batch", "2", "--quiet"], "already holds a training run"),
    # fewshot eval
    case("eval-missing-root", EVAL + ["--data-root", "{work}/nowhere"], "no Omniglot found"),
    case("eval-empty-root", EVAL + ["--data-root", "{empty}"], "no Omniglot found"),
    case("eval-partial-root", EVAL + ["--data-root", "{partial}"], "images_evaluation/ is missing"),
    case("eval-corrupt-png", EVAL + ["--data-root", "{corrupt}"], "{bad_png}"),
    case("eval-split-unknown-character", ["eval", "{vinyals_run}", "--episodes", "2", "--quiet"],
         "Nope/character99"),
    case("eval-ways-over-classes", EVAL + ["--ways", "12"], "ways (12) exceeds"),
    case("eval-ways-over-val-classes", EVAL + ["--part", "val", "--ways", "4"], "ways (4) exceeds"),
    case("eval-shots-plus-queries", EVAL + ["--shots", "5", "--queries", "16"],
         "shots + queries (5 + 16)"),
    case("eval-zero-episodes", EVAL + ["--episodes", "0"], "--episodes"),
    case("eval-negative-ways", EVAL + ["--ways", "-3"], "--ways"),
    case("eval-one-way", EVAL + ["--ways", "1"], "--ways must be at least 2"),
    case("eval-zero-queries", EVAL + ["--queries", "0"], "--queries"),
    case("eval-negative-inner-steps", ["eval", "{maml}", "--episodes", "2", "--quiet",
                                       "--inner-steps", "-1"], "--inner-steps"),
    case("eval-metasgd-negative-inner-steps", ["eval", "{metasgd}", "--episodes", "2", "--quiet",
                                               "--inner-steps", "-1"], "--inner-steps"),
    case("eval-anil-zero-inner-steps", ["eval", "{anil}", "--episodes", "2", "--quiet",
                                        "--inner-steps", "0"], "--inner-steps"),
    case("eval-maml-checkpoint-under-anil-config", ["eval", "{maml_as_anil}"],
         "holds a maml model"),
    case("eval-metasgd-checkpoint-under-maml-config", ["eval", "{metasgd_as_maml}"],
         "holds a metasgd model"),
    case("eval-inner-steps-for-protonet", EVAL + ["--inner-steps", "2"],
         "--inner-steps applies to maml, metasgd, anil only, not to {proto}, a protonet run"),
    case("eval-missing-run", ["eval", "{work}/nowhere"], "does not exist"),
    case("eval-run-without-checkpoint", ["eval", "{no_checkpoint}"], "no checkpoint"),
    case("eval-truncated-checkpoint", ["eval", "{truncated_best}"], "cannot load checkpoint"),
    case("eval-checkpoint-of-other-algorithm", ["eval", "{mixed}"], "holds a protonet model"),
    case("eval-not-a-checkpoint", ["eval", "{proto}/log.csv"], "cannot load checkpoint"),
    case("eval-config-not-json", ["eval", "{config_not_json}"], "not valid JSON"),
    case("eval-csv-not-evaluation", EVAL + ["--csv", "{other_csv}"], "not an evaluation CSV"),
    case("eval-csv-binary", EVAL + ["--csv", "{binary_csv}"], "not an evaluation CSV"),
    case("eval-csv-under-file", EVAL + ["--csv", "{file}/results.csv"], "{file}"),
    case("eval-csv-is-directory", EVAL + ["--csv", "{work}"], "is a directory"),
    # fewshot predict
    case("predict-missing-run", ["predict", "{work}/nowhere", *PREDICT], "does not exist"),
    case("predict-truncated-checkpoint", ["predict", "{truncated_best}", *PREDICT],
         "cannot load checkpoint"),
    case("predict-checkpoint-of-other-algorithm", ["predict", "{mixed}", *PREDICT],
         "holds a protonet model"),
    case("predict-missing-support", ["predict", "{proto}", "--support", "{work}/nowhere",
                                     "--query", "{query}"], "does not exist"),
    case("predict-one-class-support", ["predict", "{proto}", "--support", "{one_class}",
                                       "--query", "{query}"], "at least two class"),
    case("predict-corrupt-query", ["predict", "{proto}", "--support", "{support}",
                                   "--query", "{bad_png_path}"], "{bad_png}"),
    case("predict-zero-steps", ["predict", "{maml}", *PREDICT, "--steps", "0"], "--steps"),
    case("predict-metasgd-zero-steps", ["predict", "{metasgd}", *PREDICT, "--steps", "0"], "--steps"),
    case("predict-anil-zero-steps", ["predict", "{anil}", *PREDICT, "--steps", "0"], "--steps"),
    case("predict-maml-checkpoint-under-anil-config", ["predict", "{maml_as_anil}", *PREDICT],
         "holds a maml model"),
    case("predict-steps-for-protonet", ["predict", "{proto}", *PREDICT, "--steps", "2"],
         "--steps applies to maml, metasgd, anil only, not to {proto}, a protonet run"),
    case("predict-csv-under-file", ["predict", "{proto}", *PREDICT, "--csv", "{file}/p.csv"],
         "{file}"),
    # fewshot aggregate
    case("aggregate-missing-csv", ["aggregate", "{work}/nowhere.csv"], "no file matches"),
    case("aggregate-csv-not-evaluation", ["aggregate", "{other_csv}"], "not an evaluation CSV"),
    case("aggregate-csv-binary", ["aggregate", "{binary_csv}"], "not an evaluation CSV"),
    case("aggregate-bad-accuracy", ["aggregate", "{bad_accuracy_csv}"], "not a number"),
    case("aggregate-unknown-column", ["aggregate", "{eval_csv}", "--by", "colour"], "colour"),
    case("aggregate-out-under-file", ["aggregate", "{eval_csv}", "--out", "{file}/table.txt"],
         "{file}"),
    # fewshot reproduce (each fails before any training starts)
    case("reproduce-missing-root", REPRODUCE + ["--data-root", "{work}/nowhere"],
         "no Omniglot found"),
    case("reproduce-empty-root", REPRODUCE + ["--data-root", "{empty}"], "no Omniglot found"),
    case("reproduce-partial-root", REPRODUCE + ["--data-root", "{partial}"],
         "images_evaluation/ is missing"),
    case("reproduce-corrupt-png", REPRODUCE + ["--data-root", "{corrupt}"], "{bad_png}"),
    case("reproduce-split-unknown-character",
         REPRODUCE + ["--split", "vinyals", "--split-dir", "{bad_splits}"], "Nope/character99"),
    case("reproduce-ways-over-classes",
         REPRODUCE + ["--split", "lake", "--algorithms", "protonet", "--cells", "20w1s"],
         "exceeds"),
    case("reproduce-anil-ways-over-classes",
         REPRODUCE + ["--split", "lake", "--algorithms", "anil", "--cells", "20w1s"], "exceeds"),
    case("reproduce-metasgd-bad-cell", REPRODUCE + ["--algorithms", "metasgd", "--cells", "5w0s"],
         "bad cell"),
    case("reproduce-bad-cell", REPRODUCE + ["--cells", "0w1s"], "bad cell"),
    case("reproduce-one-way-cell", REPRODUCE + ["--cells", "1w1s"], "at least 2 ways"),
    case("reproduce-unknown-algorithm-in-list", REPRODUCE + ["--algorithms", "maml,nope"],
         "'nope' is not one of"),
    case("reproduce-out-under-file", ["reproduce", "--out", "{file}/results", "--quiet"], "{file}"),
    case("reproduce-csv-not-evaluation", ["reproduce", "--out", "{foreign_results}", "--quiet"],
         "not an evaluation CSV"),
    # fewshot plot
    case("plot-curves-missing-run", ["plot", "curves", "{work}/nowhere", "--out", "{work}/c.png"],
         "no log.csv"),
    case("plot-curves-not-a-log", ["plot", "curves", "{binary_log}", "--out", "{work}/c.png"],
         "not a training log"),
    case("plot-curves-out-under-file", ["plot", "curves", "{proto}", "--out", "{file}/c.png"],
         "{file}"),
    case("plot-accuracy-csv-not-evaluation",
         ["plot", "accuracy", "{other_csv}", "--out", "{work}/a.png"], "not an evaluation CSV"),
    case("plot-accuracy-csv-binary",
         ["plot", "accuracy", "{binary_csv}", "--out", "{work}/a.png"], "not an evaluation CSV"),
    case("plot-accuracy-out-under-file",
         ["plot", "accuracy", "{eval_csv}", "--out", "{file}/a.png"], "{file}"),
    # fewshot export, and shipped models (pretrained:NAME) wherever a run goes
    case("export-to-zip", ["export", "{proto}", "--out", "{work}/net.zip"],
         "give a file ending in .pt2 or .onnx"),
    case("export-unknown-pretrained", ["export", "pretrained:nope", "--out", "{work}/net.pt2"],
         "no shipped model 'nope'"),
    case("eval-unknown-pretrained", ["eval", "pretrained:nope"], "no shipped model 'nope'"),
    case("predict-unknown-pretrained", ["predict", "pretrained:nope", *PREDICT],
         "no shipped model 'nope'"),
    case("train-init-from-unknown-pretrained", TRAIN + ["--init-from", "pretrained:nope"],
         "no shipped model 'nope'"),
    # runs and files that cannot be used as given
    case("train-out-existing-run", TRAIN[:-1] + ["{proto_copy}"], "already holds a training run"),
    case("train-overwrite-with-resume", ["train", "protonet", "--resume", "{proto_copy}",
                                         "--overwrite"], "--overwrite"),
    case("train-resume-fewer-iterations", ["train", "protonet", "--resume", "{proto_copy}",
                                           "--iterations", "1"], "done 2 iterations already"),
    case("eval-text-checkpoint", ["eval", "{text_best}"], "not a PyTorch checkpoint at all"),
    case("plot-curves-unknown-format", ["plot", "curves", "{proto}", "--out", "{work}/c.jpg"],
         ".png, .pdf, .svg"),
    case("plot-accuracy-unknown-format", ["plot", "accuracy", "{eval_csv}", "--out", "{work}/a.gif"],
         ".png, .pdf, .svg"),
    case("plot-accuracy-header-only", ["plot", "accuracy", "{header_csv}", "--out", "{work}/a.png"],
         "no evaluation rows"),
    case("plot-curves-no-validation-rows", ["plot", "curves", "{fresh_log}", "--out",
                                            "{work}/c.png"], "no run has a validation row yet"),
    case("eval-one-episode", EVAL + ["--episodes", "1"], "--episodes must be at least 2"),
    case("train-no-algorithm", ["train"], "Missing argument"),
    case("train-config-unknown-key", TRAIN + ["--config", "{toml_unknown_key}"],
         "'colour' is no option of fewshot train"),
    case("eval-config-not-toml", EVAL + ["--config", "{other_csv}"], "is not a TOML file"),
    case("aggregate-config-missing", ["aggregate", "{eval_csv}", "--config", "{work}/none.toml"],
         "cannot read"),
    case("train-zero-threads", TRAIN + ["--threads", "0"], "--threads must be at least 1"),
    case("eval-negative-threads", EVAL + ["--threads", "-2"], "--threads must be at least 1"),
    case("eval-maml-running-bn", ["eval", "{maml}", "--episodes", "2", "--quiet", "--bn-mode",
                                  "running"], "running statistics"),
    case("predict-maml-running-bn", ["predict", "{maml}", *PREDICT, "--bn-mode", "running"],
         "running statistics"),
    # Meta-SGD's clones write into its running statistics too, even where it keeps them.
    case("eval-metasgd-unsound-running-bn", ["eval", "{metasgd_running}", "--episodes", "2",
                                             "--quiet", "--bn-mode", "running"], "not sound"),
    case("predict-metasgd-unsound-running-bn",
         ["predict", "{metasgd_running}", *PREDICT, "--bn-mode", "running"], "not sound"),
    case("predict-query-folder-of-another-class",
         ["predict", "{proto}", "--support", "{support}", "--query", "{stranger_query}"],
         "'zz' is none of them"),
    # CSVs never clobbered or misread
    case("aggregate-out-is-input", ["aggregate", "{eval_csv}", "--out", "{eval_csv}"],
         "one of the CSVs read"),
    case("aggregate-out-over-evaluation-csv", ["aggregate", "{eval_csv}", "--out", "{header_csv}"],
         "is an evaluation CSV"),
    case("aggregate-summary-as-input", ["aggregate", "{summary_csv}"],
         "is a summary written by fewshot aggregate"),
    case("eval-csv-into-summary", EVAL + ["--csv", "{summary_csv}"],
         "is a summary written by fewshot aggregate"),
    case("predict-csv-over-evaluation-csv", ["predict", "{proto}", *PREDICT, "--csv",
                                             "{header_csv}"], "is an evaluation CSV"),
    case("predict-csv-over-summary", ["predict", "{proto}", *PREDICT, "--csv", "{summary_csv}"],
         "is a summary of fewshot aggregate"),
    # other datasets (--dataset): refused as Omniglot's problems are
    case("train-folder-empty", TRAIN + ["--dataset", "folder", "--data-root", "{empty}"],
         "no class folder of images in"),
    case("data-folder-empty", ["data", "--dataset", "folder", "--data-root", "{empty}"],
         "no class folder of images in"),
    case("train-folder-fewer-usable-classes-than-ways",
         TRAIN + ["--dataset", "folder", "--data-root", "{uneven}", "--image-size", "16"],
         "split part 'train' has 3 classes with at least 3 images (shots + queries), fewer than "
         "the 5 ways"),
    case("train-zero-image-size", TRAIN + ["--dataset", "mini-imagenet", "--data-root", "{mini}",
                                           "--image-size", "0"], "--image-size must be at least 1"),
    case("data-zero-image-size", ["data", "--dataset", "mini-imagenet", "--data-root", "{mini}",
                                  "--image-size", "0"], "--image-size must be at least 1"),
    case("train-image-size-below-conv4", TRAIN + ["--dataset", "mini-imagenet", "--data-root",
                                                  "{mini}", "--image-size", "8"],
         "--image-size 8 is too small for the conv4 backbone"),
    case("train-omniglot-three-channels", TRAIN + ["--channels", "3"], "--channels 3: omniglot"),
    case("data-omniglot-three-channels", ["data", "--channels", "3"], "--channels 3: omniglot"),
    case("train-mini-imagenet-lake-split", TRAIN + ["--dataset", "mini-imagenet", "--data-root",
                                                    "{mini}", "--split", "lake"],
         "mini-imagenet has no split 'lake'"),
    case("data-mini-imagenet-lake-split", ["data", "--dataset", "mini-imagenet", "--data-root",
                                           "{mini}", "--split", "lake"],
         "mini-imagenet has no split 'lake'"),
    case("eval-mini-imagenet-run-empty-root", ["eval", "{mini_run}", "--episodes", "2", "--quiet",
                                               "--data-root", "{empty}"], "no mini-ImageNet in"),
    case("predict-invert-mini-imagenet-run", ["predict", "{mini_run}", *PREDICT, "--invert", "yes"],
         "--invert yes: the mini-imagenet images this run learned from were not inverted"),
    case("train-split-fractions-two", TRAIN + ["--dataset", "folder", "--data-root", "{uneven}",
                                               "--split-fractions", "80/20"],
         "split fractions must be three positive numbers for train, val and test"),
    case("data-split-fractions-zero", ["data", "--dataset", "folder", "--data-root", "{uneven}",
                                       "--split-fractions", "80/0/20"],
         "split fractions must be three positive numbers"),
    case("train-split-fractions-omniglot", TRAIN + ["--split-fractions", "70/10/20"],
         "--split-fractions applies to --dataset folder; omniglot has its own split"),
    case("train-split-fractions-given-parts",
         TRAIN + ["--dataset", "folder", "--data-root", "{uneven}", "--image-size", "16",
                  "--split-fractions", "70/10/20"],
         "gives its own parts (split 'folders')"),
    case("data-split-fractions-given-parts",
         ["data", "--dataset", "folder", "--data-root", "{uneven}", "--image-size", "16",
          "--split-fractions", "70/10/20"], "gives its own parts (split 'folders')"),
    case("train-unknown-dataset", TRAIN + ["--dataset", "nosuch"], "'nosuch' is not one of"),
    case("data-unknown-dataset", ["data", "--dataset", "nosuch"], "'nosuch' is not one of"),
    case("reproduce-unknown-dataset", REPRODUCE + ["--dataset", "nosuch"], "'nosuch' is not one of"),
]


def train_tiny(algorithm: str, run_dir: Path, data) -> Path:
    extra = dict(meta_batch=2, first_order=True) if algorithm in ("maml", "metasgd", "anil") else {}
    train(TrainConfig(algorithm, **TINY, **extra), run_dir, data=data, progress=False)
    return run_dir


def copy_run(source: Path, target: Path, change) -> Path:
    shutil.copytree(source, target)
    change(target)
    return target


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


@pytest.fixture(scope="module")
def paths(tiny_root, tiny_data, cache_dir, tmp_path_factory) -> dict[str, str]:
    """Valid tiny runs, broken copies of them, broken data roots and unwritable paths."""
    work = tmp_path_factory.mktemp("bad-input")
    proto = train_tiny("protonet", work / "proto", tiny_data)
    maml = train_tiny("maml", work / "maml", tiny_data)
    metasgd = train_tiny("metasgd", work / "metasgd", tiny_data)
    anil = train_tiny("anil", work / "anil", tiny_data)
    metasgd_running = work / "metasgd-running"
    train(TrainConfig("metasgd", **TINY, meta_batch=2, first_order=True, bn_running_stats=True),
          metasgd_running, data=tiny_data, progress=False)

    (work / "empty").mkdir()
    mini = work / "mini"  # mini-ImageNet's three pickles, tiny, and a run trained on them
    write_pickles(mini)
    mini_run = work / "mini-run"
    train(TrainConfig("protonet", **{**TINY, "ways": 2, "test_ways": 2}, dataset="mini-imagenet",
                      image_size=16), mini_run,
          data=load_mini_imagenet(mini, image_size=16, cache_dir=cache_dir), progress=False)
    uneven = work / "uneven"  # 3 of the 6 training classes have fewer than shots + queries images
    for part, counts in (("train", [3, 3, 3, 1, 1, 2]), ("val", [3] * 3), ("test", [3] * 3)):
        for c, count in enumerate(counts):
            (uneven / part / f"{part}{c}").mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (20, 20), (40 * c, 90, 30 * i)).save(
                    uneven / part / f"{part}{c}" / f"{i}.png")
    shutil.copytree(tiny_root / "images_background", work / "partial" / "images_background")
    corrupt = Path(shutil.copytree(tiny_root, work / "corrupt"))
    fresh = make_tiny_omniglot(work / "fresh", {"images_background": {"A": 2},
                                                "images_evaluation": {"B": 2}}, drawings=2)
    bad_png = sorted(corrupt.glob("images_evaluation/*/*/*.png"))[5]
    truncate(bad_png)
    bad_splits = work / "splits"
    bad_splits.mkdir()
    for part in ("train", "val", "test", "trainval"):
        (bad_splits / f"{part}.txt").write_text("Alpha/character01/rot000\nNope/character99/rot090\n")

    def vinyals(run: Path) -> None:
        config = json.loads((run / "config.json").read_text())
        config.update(split="vinyals", split_dir=str(bad_splits))
        (run / "config.json").write_text(json.dumps(config))

    file = work / "a-file"
    file.write_text("not a folder\n")
    (work / "other.csv").write_text("name,score\nalice,3\n")
    (work / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (work / "bad-accuracy.csv").write_text("algorithm,accuracy_mean\nprotonet,high\n")
    append_row(work / "eval.csv", {"algorithm": "protonet", "accuracy_mean": "0.9",
                                   "test_ways": "5", "test_shots": "1"})
    (work / "unknown-key.toml").write_text('colour = "blue"\n')
    (work / "header.csv").write_text("algorithm,accuracy_mean,test_ways,test_shots\n")
    (work / "summary.csv").write_text("algorithm,accuracy_mean,ci95,runs,episodes,run_std,"
                                      "seeds_ci95\nprotonet,0.9,0.01,1,100,,\n")
    (work / "fresh-log").mkdir()
    (work / "fresh-log" / "log.csv").write_text(
        "iteration,train_loss,train_accuracy,val_accuracy,elapsed_seconds\n")
    (work / "foreign-results").mkdir()
    shutil.copy(work / "other.csv", work / "foreign-results" / "eval.csv")
    (work / "binary-log").mkdir()
    shutil.copy(work / "binary.csv", work / "binary-log" / "log.csv")
    support, one_class = work / "support", work / "one-class" / "a"
    for label, character in (("a", "character01"), ("b", "character02")):
        shutil.copytree(tiny_root / "images_background" / "Alpha" / character, support / label)
    shutil.copytree(support / "a", one_class)
    stranger_query = work / "stranger-query"  # class sub-folders, one named after no class
    for label in ("a", "zz"):
        shutil.copytree(support / "a", stranger_query / label)
    return {key: str(value) for key, value in {
        "work": work, "proto": proto, "maml": maml, "metasgd": metasgd, "anil": anil,
        "empty": work / "empty", "mini": mini, "mini_run": mini_run, "uneven": uneven,
        "partial": work / "partial", "corrupt": corrupt, "fresh": fresh, "bad_png": bad_png.name,
        "bad_splits": bad_splits, "file": file, "other_csv": work / "other.csv",
        "binary_csv": work / "binary.csv", "bad_accuracy_csv": work / "bad-accuracy.csv",
        "eval_csv": work / "eval.csv", "foreign_results": work / "foreign-results",
        "binary_log": work / "binary-log", "support": support, "one_class": one_class.parent,
        "query": sorted(tiny_root.glob("images_evaluation/*/*/*.png"))[0], "bad_png_path": bad_png,
        "truncated_last": copy_run(proto, work / "truncated-last", lambda r: truncate(r / "last.pt")),
        "truncated_best": copy_run(proto, work / "truncated-best", lambda r: truncate(r / "best.pt")),
        "no_checkpoint": copy_run(proto, work / "no-checkpoint",
                                  lambda r: [(r / n).unlink() for n in ("best.pt", "last.pt")]),
        # ProtoNet's checkpoints under MAML's config.json.
        "mixed": copy_run(proto, work / "mixed",
                          lambda r: shutil.copy(maml / "config.json", r / "config.json")),
        # MAML's checkpoints (the very network ANIL uses) under ANIL's config.json, and back.
        "maml_as_anil": copy_run(maml, work / "maml-as-anil",
                                 lambda r: shutil.copy(anil / "config.json", r / "config.json")),
        "metasgd_as_maml": copy_run(metasgd, work / "metasgd-as-maml",
                                    lambda r: shutil.copy(maml / "config.json", r / "config.json")),
        "config_not_json": copy_run(proto, work / "config-not-json",
                                    lambda r: (r / "config.json").write_text("{algorithm: protonet")),
        "config_list": copy_run(proto, work / "config-list",
                                lambda r: (r / "config.json").write_text('["protonet"]')),
        "vinyals_run": copy_run(proto, work / "vinyals-run", vinyals),
        "metasgd_running": metasgd_running, "stranger_query": stranger_query,
        "proto_copy": copy_run(proto, work / "proto-copy", lambda r: None),
        "toml_unknown_key": work / "unknown-key.toml", "header_csv": work / "header.csv", "fresh_log": work / "fresh-log",
        "summary_csv": work / "summary.csv",
        "text_best": copy_run(proto, work / "text-best",
                              lambda r: (r / "best.pt").write_text("not a checkpoint\n")),
    }.items()}


def environment(tiny_root: Path, cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEWSHOT_")}
    env.update(FEWSHOT_DATA=str(tiny_root), FEWSHOT_CACHE=str(cache_dir), OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


# Runs in the helper interpreter: import once, then fork a child per case (two at a time).
RUNNER = r"""
import json, os, runpy, sys
import fewshot_cli.cli  # the expensive imports (torch, learn2learn), before any fork

def child(job):
    code = 1
    try:
        os.environ.update(job.get("env", {}))
        for fd, name in ((1, job["stdout"]), (2, job["stderr"])):
            os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = [sys.executable] + job["args"]
        runpy.run_module(job.get("module", "fewshot_cli"), run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:  # handled as the interpreter does at exit
        code = 0 if exc.code is None else exc.code
        if not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())  # the interpreter's own traceback printer
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

jobs, codes, running = json.load(open(sys.argv[1])), {}, {}
for job in jobs + [None] * 2:
    while running and (job is None or len(running) >= 2):
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    if job is not None:
        pid = os.fork()
        if pid == 0:
            child(job)
        running[pid] = job["id"]
print(json.dumps(codes))
"""


def run_forked(jobs: list[dict], env: dict, folder: Path) -> dict[str, int]:
    # All cases in one call: a few minutes on idle cores, several times that on a loaded machine.
    (folder / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run([sys.executable, "-c", RUNNER, str(folder / "jobs.json")], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def run_spawned(jobs: list[dict], env: dict) -> dict[str, int]:
    def one(job):
        with open(job["stdout"], "w") as out, open(job["stderr"], "w") as err:
            return subprocess.run([sys.executable, "-m", "fewshot_cli", *job["args"]],
                                  env={**env, **job.get("env", {})},
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  timeout=1800).returncode

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip([job["id"] for job in jobs], pool.map(one, jobs)))


@pytest.fixture(scope="module")
def outcomes(request, paths, tiny_root, cache_dir) -> dict[str, tuple[int, str, str]]:
    """``(exit code, stdout, stderr)`` of every selected case, all run in one batch."""
    folder = Path(paths["work"]) / "outputs"
    folder.mkdir()
    prefix = request.node.nodeid + "::test_bad_input_fails_with_one_line["
    selected = {item.nodeid[len(prefix):-1] for item in request.session.items
                if item.nodeid.startswith(prefix)}
    jobs = []
    for param in CASES:
        if param.id in selected:
            args, _, env = param.values
            jobs.append(dict(id=param.id, args=[a.format(id=param.id, **paths) for a in args],
                             env={k: v.format(**paths) for k, v in env.items()},
                             stdout=str(folder / f"{param.id}.out"),
                             stderr=str(folder / f"{param.id}.err")))
    env = environment(tiny_root, cache_dir)
    # The tensor cache of the tiny data exists already (tiny_data built it in cache_dir).
    codes = (run_spawned(jobs, env) if os.environ.get("FEWSHOT_TEST_SPAWN") == "1"
             else run_forked(jobs, env, folder))
    return {job["id"]: (codes[job["id"]], Path(job["stdout"]).read_text(),
                        Path(job["stderr"]).read_text()) for job in jobs}


@pytest.mark.parametrize("args, names, env", CASES)
def test_bad_input_fails_with_one_line(args, names, env, request, outcomes, paths):
    code, stdout, stderr = outcomes[request.node.callspec.id]
    assert "Traceback" not in stderr, stderr
    assert code == 2, f"exit code {code}\nstdout: {stdout}\nstderr: {stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0][7:].strip(), stderr
    assert names.format(**paths) in lines[0], lines[0]


def test_the_runner_sees_tracebacks_and_exit_codes(tmp_path, tiny_root, cache_dir):
    """The forking runner reports a crash as the interpreter would, or the matrix proves nothing."""
    (tmp_path / "crashing.py").write_text("raise RuntimeError('unexpected')\n")
    (tmp_path / "exiting.py").write_text("import sys\nprint('bye', file=sys.stderr)\nsys.exit(3)\n")
    env = environment(tiny_root, cache_dir)
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    jobs = [dict(id=module, module=module, args=args, stdout=str(tmp_path / f"{module}.out"),
                 stderr=str(tmp_path / f"{module}.err"))
            for module, args in (("fewshot_cli", ["--version"]), ("crashing", []), ("exiting", []))]
    codes = run_forked(jobs, env, tmp_path)
    assert codes == {"fewshot_cli": 0, "crashing": 1, "exiting": 3}
    assert "fewshot" in (tmp_path / "fewshot_cli.out").read_text()
    crash = (tmp_path / "crashing.err").read_text()
    assert crash.startswith("Traceback") and "RuntimeError: unexpected" in crash
    assert (tmp_path / "exiting.err").read_text() == "bye\n"
