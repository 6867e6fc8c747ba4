"""Control data and Decision Transformer training for the NAMM-X RL experiments.

behaviour.py  - ARS-trained linear behaviour policies (Hopper-v5, Walker2d-v5)
make_data.py  - medium / medium-replay datasets in D4RL's HDF5 layout
train.py      - Decision Transformer training (HF recipe), saved with save_pretrained
"""
