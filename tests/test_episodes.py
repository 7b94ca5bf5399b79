"""Episodes: shapes, labels, no leakage between parts or between support and query, seeding."""

import pytest
import torch

from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.splits import make_split
from fewshot_cli.errors import FewshotError


@pytest.fixture(scope="module")
def lake(tiny_data):
    return make_split(tiny_data, "lake")


@pytest.fixture(scope="module")
def character_of_image(tiny_data):
    """Maps an episode image (bytes of its float tensor) back to its character."""
    images = tiny_data.images.unsqueeze(1).float().div(255)
    return {images[i].numpy().tobytes(): int(c) for i, c in enumerate(tiny_data.labels)}


@pytest.mark.parametrize("ways,shots,queries", [(5, 1, 15), (3, 5, 5), (10, 2, 3)])
def test_episode_shapes_and_labels(tiny_data, lake, ways, shots, queries):
    sampler = EpisodeSampler(meta_dataset(tiny_data, lake, "train"), ways, shots, queries, seed=1)
    for i in range(5):
        e = sampler[i]
        assert e.support.shape == (ways * shots, 1, 28, 28)
        assert e.query.shape == (ways * queries, 1, 28, 28)
        assert sorted(e.support_labels.unique().tolist()) == list(range(ways))
        assert e.support_labels.bincount().tolist() == [shots] * ways
        assert e.query_labels.bincount().tolist() == [queries] * ways
        assert e.support.dtype == torch.float32 and 0 <= e.support.min() and e.support.max() <= 1


def test_support_and_query_share_no_image_and_labels_match_characters(tiny_data, lake,
                                                                      character_of_image):
    sampler = EpisodeSampler(meta_dataset(tiny_data, lake, "test"), 5, 4, 6, seed=0)
    for i in range(10):
        e = sampler[i]
        support = [x.numpy().tobytes() for x in e.support]
        query = [x.numpy().tobytes() for x in e.query]
        assert not set(support) & set(query)
        assert len(set(support + query)) == len(support) + len(query)
        # One label, one character, in both sets.
        pairs = {(int(y), character_of_image[x]) for x, y in zip(support + query,
                                                                 torch.cat([e.support_labels, e.query_labels]))}
        assert len(pairs) == 5 and len({c for _, c in pairs}) == 5


@pytest.mark.parametrize("part", ["train", "val", "test"])
def test_episodes_only_draw_their_parts_characters(tiny_data, lake, character_of_image, part):
    ways = min(5, len(lake.parts[part]))
    sampler = EpisodeSampler(meta_dataset(tiny_data, lake, part), ways, 1, 2, seed=3)
    allowed = lake.characters(part)
    for i in range(30):
        e = sampler[i]
        seen = {character_of_image[x.numpy().tobytes()] for x in torch.cat([e.support, e.query])}
        assert seen <= allowed


def test_same_seed_same_episodes_other_seed_others(tiny_data, lake):
    dataset = meta_dataset(tiny_data, lake, "test")
    a, b = EpisodeSampler(dataset, 5, 1, 5, seed=7), EpisodeSampler(dataset, 5, 1, 5, seed=7)
    other = EpisodeSampler(dataset, 5, 1, 5, seed=8)
    b[3]  # out-of-order access does not matter: episode i depends on (seed, i) only
    for i in range(5):
        assert torch.equal(a[i].support, b[i].support) and torch.equal(a[i].query, b[i].query)
        assert torch.equal(a[i].query_labels, b[i].query_labels)
    assert any(not torch.equal(a[i].support, other[i].support) for i in range(5))
    assert not torch.equal(a[0].support, a[1].support)


def test_sampling_restores_global_random_state(tiny_data, lake):
    import random

    sampler = EpisodeSampler(meta_dataset(tiny_data, lake, "test"), 5, 1, 5, seed=0)
    random.seed(123)
    expected = random.random()
    random.seed(123)
    sampler[0]
    assert random.random() == expected


def test_rotation_turns_each_class_as_a_whole(tiny_data, lake, character_of_image):
    dataset = meta_dataset(tiny_data, lake, "train")
    plain = EpisodeSampler(dataset, 5, 2, 3, seed=4)
    rotated = EpisodeSampler(dataset, 5, 2, 3, seed=4, rotate=True)
    turned_classes = 0
    for i in range(6):
        e = rotated[i]
        images = torch.cat([e.support, e.query])
        labels = torch.cat([e.support_labels, e.query_labels])
        for label in range(5):
            members = images[labels == label]
            turns = set()
            for x in members:
                for k in range(4):
                    if torch.rot90(x, -k, dims=(-2, -1)).numpy().tobytes() in character_of_image:
                        turns.add(k)
                        break
            assert len(turns) == 1  # all images of one class share the rotation
            turned_classes += turns != {0}
    assert turned_classes > 0
    assert plain[0].support.shape == rotated[0].support.shape


def test_vinyals_rotated_classes_are_turned_images(tiny_data, tmp_path):
    from test_splits import vinyals_lines, write_vinyals

    names = tiny_data.characters
    write_vinyals(tmp_path, {"train": vinyals_lines(names[:20]), "val": vinyals_lines(names[20:24]),
                             "test": vinyals_lines(names[24:]), "trainval": vinyals_lines(names[:24])})
    split = make_split(tiny_data, "vinyals", split_dir=tmp_path)
    dataset = meta_dataset(tiny_data, split, "test").dataset
    first = (tiny_data.labels == 24).nonzero()[0, 0]
    original = tiny_data.images[first]  # the part keeps uint8 pixels
    for k in range(4):
        assert torch.equal(dataset.images[k * 20, 0], torch.rot90(original, k, dims=(0, 1)))


def test_too_many_ways(tiny_data, lake):
    dataset = meta_dataset(tiny_data, lake, "test")
    with pytest.raises(FewshotError, match=r"ways \(12\) exceeds the 11 classes of split part 'test'"):
        EpisodeSampler(dataset, 12, 1, 1, part="test")


def test_too_many_shots_and_queries(tiny_data, lake):
    dataset = meta_dataset(tiny_data, lake, "test")
    with pytest.raises(FewshotError, match=r"shots \+ queries \(5 \+ 16\) exceeds the 20 images"):
        EpisodeSampler(dataset, 5, 5, 16)


@pytest.mark.parametrize("ways,shots,queries", [(0, 1, 1), (5, 0, 1), (5, 1, -2)])
def test_non_positive_counts(tiny_data, lake, ways, shots, queries):
    with pytest.raises(FewshotError, match="must be at least 1"):
        EpisodeSampler(meta_dataset(tiny_data, lake, "test"), ways, shots, queries)


@pytest.mark.integration
def test_real_lake_train_episodes_never_touch_test_alphabets(real_data):
    split = make_split(real_data, "lake")
    train = meta_dataset(real_data, split, "train")
    part_classes = train.dataset.classes
    sampler = EpisodeSampler(train, 60, 5, 5, seed=0)
    test_alphabets = {real_data.alphabets[c] for c in split.characters("test")}
    assert len(part_classes) == 822
    assert not {real_data.alphabets[c] for c, _ in part_classes} & test_alphabets
    assert sampler[0].support.shape == (300, 1, 28, 28)


def test_neighbouring_seeds_share_no_episodes(tiny_data, lake):
    dataset = meta_dataset(tiny_data, lake, "test")
    zero, one = EpisodeSampler(dataset, 5, 1, 5, seed=0), EpisodeSampler(dataset, 5, 1, 5, seed=1)
    # seed * 1_000_003 + index made episode i of seed 1 episode i + 1_000_003 of seed 0.
    for i in (0, 1, 7):
        a, b = one[i], zero[i + 1_000_003]
        assert not (torch.equal(a.support, b.support) and torch.equal(a.query, b.query))
    # No two (seed, index) pairs share a generator, negative seeds included.
    import random

    from fewshot_cli.data.episodes import episode_seed

    pairs = [(s, i) for s in range(-3, 4) for i in (0, 1, 2, 1_000_003, 1_000_004, 2_000_006)]
    draws = {random.Random(episode_seed(s, i)).getrandbits(64) for s, i in pairs}
    assert len(draws) == len(pairs)


@pytest.mark.parametrize("split, rotate", [("lake", True), ("lake", False), ("random", True)])
def test_episodes_are_what_learn2learn_loads(tiny_data, split, rotate):
    """An episode gathered from its plan is bit for bit the one learn2learn's ``TaskDataset``
    loads under the same seed (``LoadData``, rotations, labels), support first then queries."""
    sampler = EpisodeSampler(meta_dataset(tiny_data, make_split(tiny_data, split), "train"),
                             5, 2, 3, seed=4, rotate=rotate)
    turned = 0
    for i in range(8):
        with sampler._drawing(i):
            images, labels = sampler.taskset[i]
        e = sampler[i]
        assert torch.equal(e.support, images[sampler.support_index])
        assert torch.equal(e.query, images[sampler.query_index])
        assert torch.equal(e.support_labels, labels[sampler.support_index])
        assert torch.equal(e.query_labels, labels[sampler.query_index])
        turned += sum(t % 4 != 0 for _, t, _ in sampler.plan(i))
    assert (turned > 0) == rotate
