"""The built-in generated benchmark is deterministic, MLVU-readable, and its answers match its frames."""
import filecmp

import numpy as np

from eval.video import mlvu
from zoo.video import make_builtin
from zoo.video.render import COLOURS, SHAPES, draw
from zoo.video.scenes import TASKS


def _make(out, seed=0):
    make_builtin.main(["--out", str(out), "--n-train", "2", "--n-test", "2", "--seed", str(seed)])


def test_same_seed_same_files_other_seed_differs(tmp_path):
    _make(tmp_path / "a")
    _make(tmp_path / "b")
    _make(tmp_path / "c", seed=1)
    for split in ("train", "test"):
        for sub in ("json", "video"):
            cmp = filecmp.dircmp(tmp_path / "a" / split / sub, tmp_path / "b" / split / sub)
            assert cmp.left_list == cmp.right_list and not cmp.diff_files and len(cmp.left_list) >= 2
            _, mismatch, errors = filecmp.cmpfiles(
                tmp_path / "a" / split / sub, tmp_path / "b" / split / sub, cmp.left_list, shallow=False
            )
            assert not mismatch and not errors
    assert (tmp_path / "a/test/json/1_needle.json").read_text() != (tmp_path / "c/test/json/1_needle.json").read_text()


def test_mlvu_loader_reads_it_and_answers_match_frames(tmp_path):
    _make(tmp_path)
    items = mlvu.load(tmp_path / "test", tasks=None)
    assert [it.task for it in items] == [t for t in TASKS for _ in range(2)]
    assert all(it.video_file.is_file() and len(it.candidates) == 4 and it.answer in "ABCD" for it in items)
    colour_rgb = {name: np.array(rgb) for name, rgb in COLOURS.items()}

    def colour_of(frame):
        centre = frame[28:36, 28:36].reshape(-1, 3).mean(0)
        return min(colour_rgb, key=lambda c: np.abs(colour_rgb[c] - centre).sum())

    for it in items:
        frames = mlvu.load_frames(it, 32)
        if it.task == "first_last":
            frame = frames[0] if "beginning" in it.question else frames[-1]
            assert colour_of(frame) == it.answer_text
        if it.task == "needle":
            shape = it.question.split()[-1].rstrip("?")
            assert shape in SHAPES
            masks = {s: draw(s, "white", 64)[..., 0] > 0 for s in SHAPES}
            hits = [f for f in frames if f.max() > 100 and
                    max(masks, key=lambda s: ((f.max(-1) > 100) == masks[s]).mean()) == shape]
            assert len(hits) == 1 and colour_of(hits[0]) == it.answer_text


def test_fixed_options_and_count_matches_frames(tmp_path):
    from zoo.video.scenes import OPTION_COLOURS, OPTION_COUNTS

    _make(tmp_path)
    items = mlvu.load(tmp_path / "test", tasks=None)
    for it in items:
        assert tuple(it.candidates) == (OPTION_COUNTS if it.task == "count" else OPTION_COLOURS)
        assert it.answer_text in it.candidates
        if it.task == "count":
            colour = it.question.split()[5]
            frames = mlvu.load_frames(it, 32)  # one frame per segment: each appearance is one frame
            centre = frames[:, 28:36, 28:36].reshape(len(frames), -1, 3).mean(1)
            lit = frames.max(axis=(1, 2, 3)) > 100
            dist = {c: np.abs(centre - np.array(rgb)).sum(1) for c, rgb in COLOURS.items()}
            nearest = [min(dist, key=lambda c: dist[c][i]) for i in range(len(frames))]
            assert sum(1 for i in range(len(frames)) if lit[i] and nearest[i] == colour) == int(it.answer_text)


def test_every_question_of_a_video_holds_the_one_asked_and_only_true_answers():
    import random

    from zoo.video.scenes import TASKS, every_question, make_video

    for seed in range(20):
        spec, questions = make_video(random.Random(seed), "v", 24, 2, 1)
        segs = spec.segments
        for task in TASKS:
            every = every_question(spec, task)
            assert questions[task] in every
            assert len({q["question"] for q in every}) == len(every)
        for q in every_question(spec, "count"):
            colour = q["question"].split(" a ")[1].split(" shape")[0]
            assert int(q["answer"]) == sum(1 for s in segs if s and s[1] == colour)
        for q in every_question(spec, "order"):
            after = [i for i, s in enumerate(segs[:-1]) if s and q["question"].endswith(f"after the {s[1]} {s[0]}?")]
            assert len(after) == 1 and segs[after[0] + 1][1] == q["answer"]
