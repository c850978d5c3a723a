"""A run's results as typed values: the scores of its test predictions, what produced them, the gate, and the diff
against a baseline run (accuracy and per-class recall before and after, and the test photos that flipped).

Training (``retrain-ci train``) and evaluation (``retrain-ci evaluate``) both end in a ``RunReport``; reports, the
shell and the pytest plugin read its fields. It becomes JSON only in ``retrain.core.run_json`` (metrics.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from retrain.core.gate import GateResult
from retrain.core.results import EpochResult, Evaluation, TrainingStep
from retrain.core.settings import Distortions, FineTuneSettings, SplitSettings

# Top-5 accuracy is reported when a model has more classes than this (with five or fewer it is always 100%).
TOP5_CLASSES = 5
# The confidence of the intervals shown beside accuracy and recall: the usual 95%.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class ClassScores:
    """One class on the test images; precision, recall and F1 are 0 for a class without any (see ``support``)."""

    precision: float
    recall: float
    f1: float
    support: int
    recall_interval: tuple[float, float] | None = None  # 95% Wilson interval; None: no test images, or an older report


@dataclass(frozen=True)
class FineTuneFacts:
    """How ``--fine-tune`` ran: its settings, the input size it trained at, and each epoch (the best one kept)."""

    settings: FineTuneSettings
    image_size: int
    best_epoch: int
    epochs_run: tuple[EpochResult, ...]


@dataclass(frozen=True)
class TfliteResult:
    """The TensorFlow Lite model, scored on the test images again (quantization costs accuracy)."""

    path: str
    quantize: str
    bytes: int
    test_accuracy: float


@dataclass(frozen=True)
class Durations:
    """Seconds each stage of a training run took."""

    bottlenecks: float
    training: float
    total: float
    fine_tuning: float | None = None


@dataclass(frozen=True)
class RunFacts:
    """What produced the numbers, so that a report says how to reproduce them; None: not recorded by this kind of run
    (``evaluate`` knows the model and the folder, not the training settings)."""

    dataset: str
    validation_accuracy: float | None = None
    validation_images: int | None = None
    module: str | None = None
    image_size: tuple[int, int] | None = None
    steps: int | None = None
    learning_rate: float | None = None
    learning_rate_schedule: str | None = None
    mirror_training: bool | None = None
    tta: bool | None = None
    train_batch_size: int | None = None
    seed: int | None = None
    split: SplitSettings | None = None  # with the module: what makes two runs' test photos comparable
    distortions: Distortions | None = None
    dataset_fingerprint: str | None = None
    images: MappingProxyType | None = None  # split (and "skipped") -> images
    tool_version: str | None = None
    tensorflow_version: str | None = None
    model: str | None = None  # evaluate: the exported model scored
    skipped: int | None = None  # evaluate: images that could not be read
    fine_tune: FineTuneFacts | None = None
    # Each evaluation of the new layer during training (``--eval-step-interval``): the report's training curves.
    # None: evaluate, or a run older than the curves.
    training_curve: tuple[TrainingStep, ...] | None = None


@dataclass(frozen=True)
class ClassChange:
    """One class's recall in each run (None: no test images of it there) and its test images in each."""

    label: str
    recall_before: float | None
    recall_after: float | None
    support_before: int
    support_after: int

    @property
    def delta(self) -> float | None:
        if self.recall_before is None or self.recall_after is None:
            return None
        return self.recall_after - self.recall_before

    def gated(self, min_support: int) -> bool:
        """Too few test images in either run and one photo moves the recall by many points: reported, not gated."""
        return min(self.support_before, self.support_after) >= min_support


@dataclass(frozen=True)
class FlippedImage:
    """A test photo in both runs, right in one and wrong in the other."""

    path: str
    content_key: str
    true_label: str
    predicted_before: str
    predicted_after: str


@dataclass(frozen=True)
class RelabelledImage:
    """A test photo in both runs under different classes: the change moved it, so its outcome says nothing of the
    model; what the model says now tells whether the old label or the new one is the odd one."""

    path: str
    content_key: str
    label_before: str
    label_after: str
    predicted_before: str
    predicted_after: str
    # The checks of the dataset's audit that name this photo (``report --audit``): a moved photo the audit suspects of
    # a wrong label, linked to what the model says of it.
    audit_findings: tuple[str, ...] = ()


def _no_counts() -> MappingProxyType:
    return MappingProxyType({})


@dataclass(frozen=True)
class ImageChanges:
    """The test photos of both runs, matched by content: those shared under the same class (what the gate compares,
    since only the model changed for them), and apart, those the change added, removed or relabelled.

    The fields after ``gone`` are newer than some baselines' metrics.json: their defaults are what an older one reads
    as (nothing known of the shared part, so the gate falls back to the whole test set)."""

    now_right: tuple[FlippedImage, ...]
    now_wrong: tuple[FlippedImage, ...]
    unchanged: int  # in both runs, with the same outcome
    relabelled: int  # in both runs under different classes: a change of the labels, not of the model
    new: int  # test photos the baseline did not have
    new_right: int
    gone: int  # the baseline's test photos this run does not have
    shared_right_before: int = 0  # of the photos in both runs under the same class, those each run got right
    shared_right_after: int = 0
    shared_classes: tuple[ClassChange, ...] = ()  # each class's recall on those photos alone
    relabelled_images: tuple[RelabelledImage, ...] = ()
    new_by_class: MappingProxyType = field(default_factory=_no_counts)  # label -> test photos added
    gone_by_class: MappingProxyType = field(default_factory=_no_counts)  # the baseline's label -> test photos removed

    @property
    def flipped(self) -> int:
        return len(self.now_right) + len(self.now_wrong)

    @property
    def shared(self) -> int:
        """Test photos in both runs under the same class: the model is all that changed for them."""
        return self.unchanged + self.flipped

    @property
    def shared_accuracy_before(self) -> float | None:
        return self.shared_right_before / self.shared if self.shared_classes and self.shared else None

    @property
    def shared_accuracy_after(self) -> float | None:
        return self.shared_right_after / self.shared if self.shared_classes and self.shared else None


@dataclass(frozen=True)
class ModelDiff:
    """This run against the baseline; ``images`` is None when the runs cannot be matched photo by photo (``note``)."""

    baseline: str
    accuracy_before: float
    accuracy_after: float
    images_before: int | None
    images_after: int
    classes: tuple[ClassChange, ...]
    min_class_support: int
    images: ImageChanges | None
    note: str = ""

    @property
    def accuracy_delta(self) -> float:
        return self.accuracy_after - self.accuracy_before


@dataclass(frozen=True)
class RunReport:
    """A run's test scores, its facts, the gate's outcome, and (with a baseline) what changed against it."""

    test_accuracy: float
    test_images: int
    per_class: MappingProxyType  # label -> ClassScores, in the model's label order
    facts: RunFacts
    gate: GateResult
    top5_accuracy: float | None = None
    diff: ModelDiff | None = None
    durations: Durations | None = None
    tflite: TfliteResult | None = None
    dataset_change: str = ""  # the audit's change line against its baseline, when given: leads the summary
    accuracy_interval: tuple[float, float] | None = None  # 95% Wilson interval; None: an older report
    labels: tuple[str, ...] = field(default=(), repr=False)

    @property
    def passed(self) -> bool:
        return self.gate.passed

    @property
    def gated(self) -> bool:
        """Whether any gate condition was asked for."""
        return self.gate.settings.asked

    def worst_classes(self, count: int = 3) -> list[tuple[str, float]]:
        """Lowest recall first, among classes with test images (a class without any has no recall to speak of)."""
        tested = {label: scores for label, scores in self.per_class.items() if scores.support}
        ranked = sorted(tested, key=lambda label: tested[label].recall)
        return [(label, tested[label].recall) for label in ranked[:count]]


def wilson_interval(successes: int, trials: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a proportion (None without trials): unlike the normal approximation it stays
    inside [0, 1] and is not zero-width at 0/n or n/n, which small test sets often score."""
    if not trials:
        return None
    from scipy.stats import binomtest  # scipy.stats takes a second to import: only when a run is scored

    interval = binomtest(successes, trials).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def accuracy_interval(evaluation: Evaluation) -> tuple[float, float] | None:
    return wilson_interval(int((evaluation.predictions == evaluation.truths).sum()), len(evaluation.truths))


def class_scores(evaluation: Evaluation) -> MappingProxyType:
    """Every label's scores on the evaluation, in label order, each recall with its interval."""
    scores = {}
    for row in evaluation.per_class(every_label=True).itertuples():
        images = int(row.images)
        interval = wilson_interval(round(float(row.recall) * images), images)
        scores[str(row.Index)] = ClassScores(float(row.precision), float(row.recall), float(row.f1), images, interval)
    return MappingProxyType(scores)


def top5_accuracy(evaluation: Evaluation) -> float | None:
    if len(evaluation.labels) <= TOP5_CLASSES:
        return None
    from sklearn.metrics import top_k_accuracy_score

    indices = list(range(len(evaluation.labels)))
    return float(top_k_accuracy_score(evaluation.truths, evaluation.probabilities, k=5, labels=indices))
