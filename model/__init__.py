"""ResNet-34 staging of Alzheimer's disease on axial MRI slices. Plain PyTorch; no UI imports.

    core/      constants, network, preprocessing, weights, calibration, engines, inference, the dataset reader
    scans/     reading what a user brings (images, DICOM, NIfTI/Analyze, archives) and grouping files into scans
    qualify/   how far to trust an answer: guard, uncertainty, explanations, faithfulness, neighbours, metrics
    serve/     the one pipeline (group -> open -> assess), the REST API, the command line, batch helpers
    reports/   the result record, the reproducibility stamp, PDF/HTML reports, the model card
    training/  what builds the shipped assets; nothing outside it imports it (tests/test_layout.py)

Command lines: `alzmri predict | evaluate | serve` (`python -m model.predict` and `model.evaluate` too) and, for
what builds the assets, `alzmri-train train | crossval | data ...` (`python -m model.training ...`).
"""
