"""A run's NAMM is packaged as a from_pretrained folder with its evolution history."""
import numpy as np
import pytest

from core.namm import NAMM
from evolve.config import parse_config
from evolve.export import export
from evolve.loop import evolve

TOY = """
fitness: toy
popsize: 4
eval_every: 2
stages:
  - {name: one, tasks: [a], generations: 2, prompts_per_task: 1, prompt_length: 64}
"""


def test_export_ships_the_best_mean_and_its_history(tmp_path):
    optimizer = evolve(parse_config(TOY, "toy.yaml"), tmp_path / "run", progress=False)
    out = tmp_path / "ship" / "namm"
    out.mkdir(parents=True)
    (out / "README.md").write_text("card")
    export(tmp_path / "run", out, "latest")
    shipped = NAMM.from_pretrained(out)
    np.testing.assert_allclose(shipped.params.numpy(), optimizer.mean.astype(np.float32))
    assert (out / "evolution" / "log.jsonl").is_file() and (out / "evolution" / "config.yaml").is_file()
    assert (out / "README.md").read_text() == "card"
    assert [p.name for p in out.parent.iterdir()] == ["namm"]  # no staging folder left behind
    best = export(tmp_path / "run", tmp_path / "best", "best")
    assert NAMM.from_pretrained(best).n_params == shipped.n_params


def test_export_names_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="evolution run folder"):
        export(tmp_path, tmp_path / "out")
