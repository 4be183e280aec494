"""Names, numbers and paths defined once for the whole project.

Everything else imports from here: label order, display names, normalisation
constants and the locations of shipped assets.
"""
from __future__ import annotations

import os
from pathlib import Path

# Label order of the Hugging Face dataset `Falah/Alzheimer_MRI`; index == label id.
CLASS_NAMES: tuple[str, ...] = (
    "Mild_Demented",
    "Moderate_Demented",
    "Non_Demented",
    "Very_Mild_Demented",
)
NUM_CLASSES = len(CLASS_NAMES)
DISPLAY_NAMES: tuple[str, ...] = (
    "Mild dementia",
    "Moderate dementia",
    "No dementia",
    "Very mild dementia",
)
# The Okabe-Ito colour of each class (colour-blind safe), on the app's charts and in the reports.
CLASS_COLORS: dict[str, str] = {
    "Mild_Demented": "#E69F00",
    "Moderate_Demented": "#D55E00",
    "Non_Demented": "#009E73",
    "Very_Mild_Demented": "#56B4E9",
}
# Disease stages from healthy to most severe, as label ids: the order used for
# confusion matrices and for the quadratic-weighted kappa (an ordinal score).
STAGE_ORDER: tuple[int, ...] = (2, 3, 0, 1)

# Intensity normalisation of the single grayscale channel, computed on the train
# split of the shared copy of the dataset (pixels scaled to [0, 1] first).
MEAN = 0.2786
STD = 0.3269
IMAGE_SIZE = 128  # native resolution of the dataset's slices

HF_DATASET_ID = "Falah/Alzheimer_MRI"
SPLIT_FILES = {
    "train": "train-00000-of-00001.parquet",
    "test": "test-00000-of-00001.parquet",
}
# Class counts that the dataset card reports (label order), to check a download against.
DATASET_CARD_COUNTS = {"train": [724, 49, 2566, 1781], "test": [172, 15, 634, 459]}
DATA_ENV_VAR = "ALZ_MRI_DATA"  # where a user's copy of the dataset lives
BATCH_DIR_ENV_VAR = "ALZ_MRI_BATCH_DIR"  # a server folder the Batch page may read scans from (off when unset)

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # model/core/constants.py -> the repository
ASSETS_DIR = PROJECT_ROOT / "assets"
WEIGHTS_PATH = ASSETS_DIR / "resnet34_alzheimer.safetensors"
WEIGHTS_SHA256_PATH = ASSETS_DIR / "resnet34_alzheimer.safetensors.sha256"
MODEL_CONFIG_PATH = ASSETS_DIR / "model_config.json"
# the project's train/test split: one row per slice, by content key (model.training.data split-list / download)
SPLIT_LIST_PATH = ASSETS_DIR / "split.csv"
METRICS_PATH = ASSETS_DIR / "metrics.json"
PREDICTIONS_PATH = ASSETS_DIR / "test_predictions.csv"
TRAIN_LOG_PATH = ASSETS_DIR / "train_log.csv"
SELECTION_LOG_PATH = ASSETS_DIR / "selection_log.csv"  # per-epoch validation log of the run that chose the recipe
BASELINE_PATH = ASSETS_DIR / "baseline.json"  # nearest-neighbour lookup figures (analysis.baseline)
# the shipped recipe validated on slices with no near-copy in training (analysis.prior_shift on a --val-buffer run)
BUFFERED_VALIDATION_PATH = ASSETS_DIR / "buffered_validation.json"
# paired errors and ensembles of the runs validated on that split (analysis.compare_runs); documentation, not the model
RUN_COMPARISON_PATH = ASSETS_DIR / "run_comparison.json"
# the recovered subjects (model.training.subjects): one row per slice, one per subject, and the consistency report
SUBJECTS_PATH = ASSETS_DIR / "subjects.csv"
SUBJECT_TABLE_PATH = ASSETS_DIR / "subject_table.csv"
SUBJECTS_REPORT_PATH = ASSETS_DIR / "subjects_report.json"
# the subject-grouped cross-validation (model.training.crossval): figures, and out-of-fold predictions per slice
CROSSVAL_PATH = ASSETS_DIR / "crossval.json"
CROSSVAL_PREDICTIONS_PATH = ASSETS_DIR / "crossval_predictions.csv"
# how often the out-of-distribution guard (model.qualify.trust) flags other images (analysis.guard_rates)
GUARD_RATES_PATH = ASSETS_DIR / "guard_rates.json"
REFERENCE_ENV_VAR = "ALZ_OASIS_REFERENCE"  # OASIS-1 reference slices and clinical table, for model.training.subjects


def CONFIG_FILES_PRESENT() -> bool:  # noqa: N802 - reads like the constant it guards
    """Whether a trained model is shipped (weights, checksum and config)."""
    return WEIGHTS_PATH.is_file() and WEIGHTS_SHA256_PATH.is_file() and MODEL_CONFIG_PATH.is_file()


def default_data_dir() -> Path:
    """The dataset folder: $ALZ_MRI_DATA if set, else ../shared/data/alzheimer_mri."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return PROJECT_ROOT.parent / "shared" / "data" / "alzheimer_mri"


def default_reference_dir() -> Path:
    """The OASIS-1 reference folder: $ALZ_OASIS_REFERENCE if set, else ../shared/data/oasis1_reference."""
    env = os.environ.get(REFERENCE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return PROJECT_ROOT.parent / "shared" / "data" / "oasis1_reference"

# Subject-bootstrap resamples behind the 95% intervals of a user's cohort evaluation: the same on the Batch page and
# in `alzmri predict --truth-*`, so one cohort gets one set of intervals (about 1 s for 1,000 slices here).
COHORT_BOOTSTRAP = 1000
