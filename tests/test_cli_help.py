"""Every command line prints its help: argparse formats each help string with %, so one stray '%' in a help
text breaks `--help` with a ValueError while the command itself still runs."""
import importlib

import pytest

COMMANDS = [
    ("bench.evolve_processes", []), ("bench.fitness_signal", []), ("bench.interleaved_cost", []),
    ("bench.kvpress_parity", []), ("bench.member_throughput", []), ("bench.paired_difference", []),
    ("bench.peak_phases", []), ("bench.policy_cost", []), ("bench.readout_heldout", []),
    ("eval.demo", []), ("eval.lm.__main__", ["run"]), ("eval.lm.__main__", []), ("eval.rl.__main__", []),
    ("eval.transfer.__main__", []), ("eval.video.__main__", []), ("evolve.distill", []), ("evolve.export", []),
    ("evolve.run", []),
]


@pytest.mark.parametrize("module,before", COMMANDS, ids=[" ".join([m, *b]) for m, b in COMMANDS])
def test_help_prints_usage(module, before, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as stop:
        main([*before, "--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out
