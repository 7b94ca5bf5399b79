"""benchmarks.datasets at a tiny size: fake mini-ImageNet pickles, read by ours and learn2learn's
stock path, every section's functions run (no timing asserted); easyfsl's part skips without it."""

from __future__ import annotations

import pickle

import pytest
import torch

from benchmarks import datasets
from fewshot_cli.data.mini_imagenet import FILES

CLASSES, IMAGES = 20, 4  # parts of 13, 3 and 4 classes


pytestmark = pytest.mark.usefixtures("one_thread")  # several threads crawl on a busy machine


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fake-mini")
    root = datasets.write_fake_pickles(folder / "mini", CLASSES, IMAGES)
    data, train, _ = datasets.load_ours(root, folder / "cache")
    stock, _ = datasets.load_stock(root)
    test = datasets.meta_dataset(data, data.as_split("ravi"), "test")
    return data, train, stock, test


def test_fake_pickles_have_learn2learns_format(tmp_path):
    root = datasets.write_fake_pickles(tmp_path, CLASSES, IMAGES)
    with open(root / FILES["val"], "rb") as handle:
        content = pickle.load(handle)  # the file this test just wrote
    assert content["image_data"].shape == (3 * IMAGES, 84, 84, 3)
    assert content["image_data"].dtype.name == "uint8"
    assert [len(v) for v in content["class_dict"].values()] == [IMAGES] * 3
    assert datasets.part_sizes(100) == {"train": 64, "val": 16, "test": 20}


def test_both_paths_read_the_same_training_images(loaded):
    data, train, stock, _ = loaded
    assert data.images.shape == (CLASSES * IMAGES, 3, 84, 84)
    assert len(train.labels) == len(stock.labels) == 13
    assert torch.allclose(train.dataset.images.float() / 255, stock.dataset.x / 255)  # uint8 kept


def test_sampling_steps_and_memory_run(loaded):
    data, train, stock, _ = loaded
    threads = torch.get_num_threads()
    ((label, seconds),) = datasets.bench_sampling(train, stock, 2, settings=((3, 1, 2),))
    assert label == "3w1s 2q" and set(seconds) == {"ours", "stock"}
    assert torch.get_num_threads() == threads  # sampling's one thread is given back
    rows = datasets.bench_maml(train, 1, queries=1, meta_batch=2, inner_steps=1, filters=4)
    assert [row[0] for row in rows] == ["first", "second"]
    assert all(s > 0 for row in rows for s in row[1:])
    config = datasets.protonet_config(3, 2, "mini-imagenet", filters=4)
    seconds, models = datasets.bench_protonet(train, config, 1, stock, warmup=False)
    assert set(seconds) == {"ours", "stock"} and set(models) == {"ours"}
    lines = datasets.memory_lines(data, train, stock)
    assert "1,270,080,000 bytes = 1.27 GB" in lines[0]
    assert datasets.ms(0.5) == "500" and datasets.ms(0.0012) == "1.20"


def test_easyfsl_side_runs(loaded):
    easyfsl = datasets.import_easyfsl()
    if isinstance(easyfsl, str):
        pytest.skip(easyfsl)
    _, train, stock, test = loaded
    support, support_labels, query, query_labels, _ = next(
        datasets.easyfsl_loader(easyfsl, train, 3, 1, 2)
    )
    assert support.shape == (3, 3, 84, 84) and query.shape == (6, 3, 84, 84)
    assert sorted(query_labels.tolist()) == [0, 0, 1, 1, 2, 2]
    ((_, seconds),) = datasets.bench_sampling(train, stock, 1, easyfsl, settings=((3, 1, 2),))
    assert set(seconds) == {"ours", "stock", "easyfsl"}
    config = datasets.protonet_config(3, 2, "mini-imagenet", filters=4)
    seconds, models = datasets.bench_protonet(train, config, 1, easyfsl=easyfsl)
    assert set(seconds) == set(models) == {"ours", "easyfsl"}
    accuracy = datasets.accuracy_on_test(models, test, 2, ways=2, queries=2)
    assert all(0 <= a <= 1 for a in accuracy.values())


def test_main_refuses_data_too_small_for_30_ways(capsys):
    with pytest.raises(SystemExit):
        datasets.main(["--classes", "20"])
    assert "30 training classes" in capsys.readouterr().err
