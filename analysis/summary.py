"""What an analysis found, as records: best_trial.json's content, and its lines for the terminal.

analyze.py builds an `AnalysisSummary`; report.py reads it; `to_dict()` is best_trial.json
(keys in field order) and `from_dict` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass

from results_folder.display import param_text
from vae_core.evaluate import outlier_text


@dataclass(frozen=True)
class OutlierImage:
    index: int  # test-set index
    loss: float | None  # its negative ELBO; None when not finite (JSON has no NaN)


@dataclass(frozen=True)
class TestNumbers:
    """The best model on the whole test set, in nats per image (best_trial.json's `test`)."""

    __test__ = False  # not a pytest test class, whatever its name

    images: int
    loss: float  # the mean negative ELBO, as papers report it
    recon: float
    kl: float
    median: float
    p99: float
    robust_loss: float  # the mean with outliers capped at the fence
    outlier_fence: float
    outlier_iqrs: float
    outliers: int  # how many images lie above the fence
    outlier_images: tuple[OutlierImage, ...]  # the worst of them, worst first
    iwae_nll: float
    iwae_nll_stderr: float
    iwae_k: int
    active_units: int
    z_dim: int
    knn_accuracy: float
    knn_k: int
    # Measured on the t-SNE map, so set once the map is drawn.
    trustworthiness: float | None = None
    trustworthiness_k: int | None = None

    @classmethod
    def from_dict(cls, record: Mapping) -> TestNumbers:
        images = tuple(OutlierImage(**o) for o in record["outlier_images"])
        return cls(**{**record, "outlier_images": images})


@dataclass(frozen=True)
class TsneInfo:
    points: int  # test images on the map
    of: int  # test images in all
    seed: int
    init: str


@dataclass(frozen=True)
class DataInfo:
    source: str  # "mnist" or "mnist-5k"
    train: int
    val: int
    test: int


@dataclass(frozen=True)
class AnalysisSummary:
    """best_trial.json: the best trial, how it was chosen, and its test-set numbers."""

    sweep: str
    results_dir: str
    metric: str  # the validation column that chose the trial
    trial_id: str
    status: str
    score: float  # the trial's best `metric`
    best_epoch: int
    epochs_run: int
    params: dict  # the searched hyperparameters' values
    config: dict  # the checkpoint's whole training config
    checkpoint: str
    checkpoint_epoch: int
    test: TestNumbers
    tsne: TsneInfo
    data: DataInfo
    device: str
    out: str  # the analysis folder
    analysed_at: str
    # How long each step took, known once the report is built.
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """best_trial.json's content: plain dicts and lists, keys in field order."""
        return _plain(self)

    @classmethod
    def from_dict(cls, record: Mapping) -> AnalysisSummary:
        return cls(
            **{
                **record,
                "test": TestNumbers.from_dict(record["test"]),
                "tsne": TsneInfo(**record["tsne"]),
                "data": DataInfo(**record["data"]),
                "files": tuple(record.get("files", ())),
            }
        )


def _plain(value: object) -> object:
    """Records as dicts and tuples as lists, recursively: what json.dumps writes and reads."""
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def summary_lines(summary: Mapping) -> list[str]:
    """best_trial.json (as analyze_results returns it) in a few lines, for the terminal."""
    s = AnalysisSummary.from_dict(summary)
    t = s.test
    worst = [(o.index, o.loss) for o in t.outlier_images]
    return [
        f"best trial {s.trial_id} ({s.status}): {s.metric} {s.score:.2f} at "
        f"epoch {s.best_epoch}; {param_text(s.params)}",
        f"test ({t.images:,} images): negative ELBO {t.loss:.2f} nats (recon "
        f"{t.recon:.2f} + KL {t.kl:.2f}), median {t.median:.2f}, 99th percentile "
        f"{t.p99:.2f}, {outlier_text(t.outliers, t.outlier_fence, worst)}",
        f"IWAE NLL <= {t.iwae_nll:.2f} (k={t.iwae_k}, s.e. {t.iwae_nll_stderr:.2f}); "
        f"active units {t.active_units}/{t.z_dim}; kNN accuracy "
        f"{100 * t.knn_accuracy:.2f}% (k={t.knn_k}); t-SNE trustworthiness "
        f"{t.trustworthiness:.3f} ({s.tsne.points:,} points)",
        f"checkpoint {s.checkpoint}",
        f"wrote {s.out} (report.html, tsne.html, tsne.parquet, best_trial.json) in "
        f"{s.seconds['total']:.0f} s ({s.cpu_seconds['total']:.0f} CPU s)",
    ]
