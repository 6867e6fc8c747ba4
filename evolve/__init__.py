"""Evolution of the NAMM with CMA-ES (the `cma` package).

    python -m evolve.run --config configs/evolve_smollm2_cpu.yaml [--out runs/evolve/NAME] [--resume] [key=value ...]

Modules: `config` (YAML stages, validation with file/line/field), `optimizer` (CMA-ES ask/tell and its
separate state file), `fitness` (the pluggable fitness interface, `toy` and `lm_fitness`),
`prompts` and `baseline_cache` (prompt sets and cached full-cache scores), `distributed`
(population sharded over torch.distributed ranks), `checkpoint` (the run folder), `runlog`
(JSONL log and plots), `loop` (the generation loop) and `run` (the command line).
"""
