"""Video benchmarks (LongVideoBench, MLVU and the project's built-in generated benchmark).

Modules:
  frames        decord frame decoding, the benchmarks' own frame-index rules, decode speed
  jsonio        reading annotation files with named errors; atomic json writes
  choices       option letters and the official answer-extraction rules
  accuracy      accuracy tables grouped by a field
  longvideobench, mlvu   loaders, official prompts, scoring
  answering     run a video model (full cache) over benchmark items
"""
