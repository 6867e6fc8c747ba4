"""A run's NAMM is packaged as a from_pretrained folder with its evolution history."""
import numpy as np
import pytest

from core.errors import ExistsError, UserError
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
    out.mkdir(parents=True)  # an empty folder is a new destination
    export(tmp_path / "run", out, "latest")
    shipped = NAMM.from_pretrained(out)
    np.testing.assert_allclose(shipped.params.numpy(), optimizer.mean.astype(np.float32))
    assert (out / "evolution" / "log.jsonl").is_file() and (out / "evolution" / "config.yaml").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["namm"]  # no staging folder left behind
    best = export(tmp_path / "run", tmp_path / "best", "best")
    assert NAMM.from_pretrained(best).n_params == shipped.n_params


def test_export_names_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="evolution run folder"):
        export(tmp_path, tmp_path / "out")


def test_export_refuses_a_checkpoint_and_with_overwrite_replaces_it_whole(tmp_path):
    evolve(parse_config(TOY, "toy.yaml"), tmp_path / "run", progress=False)
    out = tmp_path / "namm"
    export(tmp_path / "run", out, "latest")
    (out / "README.md").write_text("card of the old NAMM")
    (out / "transfer").mkdir()
    (out / "transfer" / "report.md").write_text("old results")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ExistsError, match="--overwrite"):
        export(tmp_path / "run", out, "best")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    export(tmp_path / "run", out, "best", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "evolution", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["namm", "run"]  # nothing left beside it
    with pytest.raises(UserError, match="is a file"):
        export(tmp_path / "run", out / "config.json", "best", overwrite=True)
