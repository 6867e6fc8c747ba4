"""The LongVideoBench and MLVU loaders read the real annotation files, build the official prompts
and answer keys, decode frames by each benchmark's rule, and count missing videos."""
import json

import numpy as np
import pytest

from eval.video import longvideobench as lvb
from eval.video import mlvu
from eval.video.answering import run_lvb, run_mlvu
from eval.video.frames import DecodeStats, lvb_indices, mlvu_indices
from eval.video.jsonio import AnnotationError
from zoo.video.mp4 import write_mp4

MLVU_COUNTS = {"plotQA": 539, "needle": 355, "ego": 352, "count": 206, "order": 259, "anomaly_reco": 200, "topic_reasoning": 264}


def _video(path, n_frames, fps, size=32):
    """Frame i has grey level i (mod 256), so decoded frames reveal their index."""
    frames = np.stack([np.full((size, size, 3), i % 256, dtype=np.uint8) for i in range(n_frames)])
    write_mp4(path, frames, fps=fps)


def test_frame_index_rules():
    # MLVU: seg = (n_total - 1) / n; int(seg / 2 + round(seg * i)) with numpy's round-half-even.
    assert mlvu_indices(128, 32)[:3] == [1, 5, 9]
    assert mlvu_indices(11, 4) == [1, 3, 6, 9]  # round(2.5) == 2, round(7.5) == 8
    assert [i // 4 for i in mlvu_indices(128, 32)] == list(range(32))
    # LongVideoBench: n = min(max, int(duration)); stride int(duration * fps / n) from 0.
    assert lvb_indices(190.16, 30.0, 16) == [356 * i for i in range(16)]
    assert lvb_indices(5.5, 2.0, 16) == [2 * i for i in range(5)]


def test_mlvu_loads_the_real_dev_annotations(fixtures_dir, tmp_path):
    items = mlvu.load(fixtures_dir / "mlvu_dev", video_dir=tmp_path)
    counts = {t: sum(it.task == t for it in items) for t in mlvu.MC_TASKS}
    assert counts == MLVU_COUNTS
    first = items[0]
    assert (first.video, first.answer, first.answer_text) == ("movie101_66.mp4", "A", "Yellow")
    assert mlvu.question_text(first) == (
        "Question: What color is the main male character in the video?\nOptions:\n"
        "(A) Yellow\n(B) Red\n(C) Green\n(D) Blue\nOnly give the best option."
    )
    assert mlvu.reference_prompt(first).startswith(mlvu.SYSTEM + "###Human: <Video><VideoHere></Video>\n###Human: Question:")
    assert mlvu.reference_prompt(first).endswith("Only give the best option.\n###Assistant: Best option:(")
    order = next(it for it in items if it.task == "order")
    assert order.answer == "D" and order.candidates[3] == "1->2->3->4"
    # Two released needle records have an answer outside their candidates: letter '@', never correct.
    assert sum(it.answer == mlvu.UNANSWERABLE for it in items) == 2


def test_mlvu_run_scores_present_videos_and_counts_missing(fixtures_dir, tmp_path):
    items = mlvu.load(fixtures_dir / "mlvu_dev", video_dir=tmp_path)
    picked = [next(it for it in items if it.task == t) for t in mlvu.MC_TASKS]
    for it in picked[:4]:  # the rest stay missing
        _video(tmp_path / "video" / it.video, 40, 4)
    picked = mlvu.load(fixtures_dir / "mlvu_dev", video_dir=tmp_path / "video")
    picked = [next(it for it in picked if it.task == t) for t in mlvu.MC_TASKS]
    seen = []

    def reply(frames, item):
        seen.append(frames[:, 0, 0, 0].astype(int).tolist())
        return item.answer + ") " + item.answer_text if item.task != "needle" else "(" + item.answer

    stats = DecodeStats()
    rows = run_mlvu(picked, reply, n_frames=8, stats=stats)
    s = mlvu.summarize(rows)
    assert s["num"] == 7 and s["num_missing"] == 3
    assert s["per_task"]["plotQA"]["acc"] == 1.0 and s["per_task"]["needle"]["acc"] == 0.0
    # a missing video is a wrong answer in its task (issue 29): M-Avg is over all seven tasks, three right
    assert s["m_avg"] == pytest.approx(3 / 7)
    missing_tasks = [t for t in mlvu.MC_TASKS if s["per_task"][t]["num_missing"]]
    assert len(missing_tasks) == 3 and all(s["per_task"][t]["acc"] == 0.0 for t in missing_tasks)
    assert stats.frames == 32 and stats.frames_per_second > 0
    want = mlvu_indices(40, 8)
    assert all(max(abs(a - b) for a, b in zip(got, want)) <= 3 for got in seen)


def test_lvb_loads_head_builds_official_prompt_and_counts_missing(fixtures_dir, tmp_path):
    ann = fixtures_dir / "longvideobench" / "lvb_val_head.json"
    items = lvb.load(tmp_path, annotation=str(ann))
    assert [it.answer for it in items] == ["B", "A", "D", "E", "B"]
    assert [len(it.candidates) for it in items] == [4, 4, 4, 5, 5]
    lines = lvb.question_lines(items[3])
    assert lines[0] == "Question: " + items[3].question
    assert lines[1:6] == [f"{L}. {c}" for L, c in zip("ABCDE", items[3].candidates)]
    assert lines[-1] == "Answer with the option's letter from the given choices directly."

    first = items[0]  # duration 190.16 s; a 1 fps video under the expected name
    _video(tmp_path / "videos" / first.video_file.name, 191, 1)
    (tmp_path / "subtitles").mkdir()
    subs = [{"timestamp": [0.0, 20.0], "text": "hello"}, {"start": "00:01:00.0", "end": "00:01:00.2", "line": "brief"},
            {"timestamp": [95.0, 115.0], "text": "later"}]
    (tmp_path / "subtitles" / first.subtitle_file.name).write_text(json.dumps(subs))

    frames, times = lvb.load_frames(first, max_frames=16)
    assert frames.shape[0] == 16 and times == [11.0 * i for i in range(16)]
    assert abs(int(frames[5, 0, 0, 0]) - 55) <= 3
    parts = lvb.prompt_parts(first, times, with_subtitles=True)
    # Frames at t <= a subtitle's mid time come first; "brief" (60.0-60.2 s) covers no frame: dropped.
    F = lvb.FrameRef
    assert parts[:18] == [F(0), "hello"] + [F(i) for i in range(1, 10)] + ["later"] + [F(i) for i in range(10, 16)]
    assert parts[18:] == lvb.question_lines(first)
    assert lvb.render_text(parts).startswith("<image>\nhello\n<image>\n")

    rows = run_lvb(items, lambda fr, parts, it: "The answer is B", max_frames=16, with_subtitles=True)
    s = lvb.summarize(rows)
    assert s["num"] == 5 and s["num_missing"] == 4 and s["acc"] == 1.0
    assert s["by_duration_group"] == {"600": {"num": 1, "acc": 1.0}}


def test_bad_annotation_names_file_and_field(tmp_path):
    bad = tmp_path / "json" / "1_plotQA.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps([{"video": "a.mp4", "question": "q", "candidates": ["x", "y"]}]))
    with pytest.raises(AnnotationError, match=r"1_plotQA\.json: record 0 lacks field 'answer'"):
        mlvu.load(tmp_path, tasks=None)
    bad.write_text(json.dumps([{"video": "a.mp4", "question": "q", "candidates": "xy", "answer": "x"}]))
    with pytest.raises(AnnotationError, match="field 'candidates'"):
        mlvu.load(tmp_path, tasks=None)
