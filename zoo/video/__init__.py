"""A built-in, generated long-video benchmark and a tiny LLaVA-NeXT-Video trained on it.

Modules:
  render        draw coloured shapes into frames (numpy)
  scenes        random videos (segment sequences) and their questions
  mp4           write frames as an mp4 with PyAV
  make_builtin  CLI: write the benchmark (MLVU annotation format) to a folder
  tokenizer     word-level tokenizer
  processor     frames + prompt -> model inputs (no torchvision)
  model         the tiny model's config, `load_video_model(path)`
  train         CLI: train the tiny model on the training split (one stage)
  rebuild       CLI: the stages that make the shipped model, from scratch, in one command
  evaluate      CLI: full-cache accuracy on a split
  text_upper_bound  CLI: a language model on the same questions with every frame given as text
  lora          low-rank adapters: add, save, load, merge
  frame_text    frames as caption tokens and the chat prompt around them (shared by both SmolLM2 stages)
  smol_llava    the LLaVA-NeXT-Video on the embedded SmolLM2: build, save, load (`load_smol_llava`)
  lm_stage      CLI: adapters that teach SmolLM2 the questions on caption tokens (resumable)
  vision_stage  CLI: vision tower and projector regressed onto the caption tokens' embeddings
  build_smol    CLI: both stages in one resumable command (the recipe of checkpoints/llava-video-smollm2)
"""
