"""ResNet-34 staging of Alzheimer's disease on axial MRI slices: data, network,
training, evaluation, inference and explanation. Plain PyTorch; no UI imports.

Command lines: `python -m model.data`, `model.train`, `model.evaluate`, `model.predict`.
"""
