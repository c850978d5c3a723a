"""Whether two photos that look alike are one picture, one scene, or merely alike: the evidence a person would use.

Features (bottlenecks) and perceptual hashes say that two photos look alike: two gerberas, two fields of sunflowers.
Only a geometric match says that one is the other: ORB keypoints matched with a ratio test, a similarity transform
(shift, scale, rotation) fitted by RANSAC, also against the mirror image. Two shots of one scene (a burst, a photo
shoot) match geometrically too, but their fine detail does not line up; an edited copy's does (crop, mirror,
rotation, colour edit, grey copy, re-encode, collage), so the correlation of the aligned photos' high-pass detail tells
them apart.

Measured on the 56 candidate pairs of flowers-dev and flowers-sample judged by eye (benchmarks/labels/pairs.csv):
the 33 pairs of different pictures matched at most 9 keypoints on a sound transform; the 19 pairs of one scene shot
twice 0 to 270 (13 of them 12 or more), with detail correlation at most 0.57; the 4 edited copies 392 to 734, with
detail correlation 0.75 to 0.95. So at the defaults every labelled pair gets its label's kind but 6 scenes shot far
apart (another pose, another angle), which are called different: missed as leakage, never called one picture.

Cost: decoding and keypoints of each photo in a candidate pair (about 20 ms at 512 px, half of it the mirror image's,
found only for a pair's second photo) and about 10 ms a pair, so the verification grows with the number of
candidates, not of photos; a bounded cache keeps each photo's keypoints while its pairs are judged.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from retrain.core.images import ImageDecodeError, OversizedImageError, decode_image
from retrain.core.shard_store import ShardStore

ONE_PICTURE = "one picture"
ONE_SCENE = "one scene"
DIFFERENT = "different"

MATCH_SIDE = 512  # photos are matched scaled to fit this square: keypoints of the picture, not of its JPEG noise
KEYPOINTS = 1500
RATIO = 0.8  # Lowe's ratio test: a match must be clearly better than the second best
REPROJECTION_PX = 4.0  # RANSAC: a keypoint this close to where the transform puts it agrees with it
MIN_KEYPOINTS = 40  # fewer (a tiny or flat image): local features cannot judge, the perceptual hash decides alone
SCALE_RANGE = (0.2, 5.0)  # a transform shrinking or enlarging more than this is a degenerate fit, not a match
DETAIL_SIGMA = 2.0  # high-pass detail: the photo minus its Gaussian blur of this radius (pixels at MATCH_SIDE)
MIN_OVERLAP_PX = 500
FEATURE_CACHE = 256  # photos whose keypoints are kept while their pairs are judged
# Bump when the match changes (a constant above, the code below), so that matches kept by an older retrain-ci are not
# reused.
MATCH_VERSION = 1


@dataclass(frozen=True)
class PairMatch:
    """What a geometric match says of two photos: ``kind`` is ONE_PICTURE, ONE_SCENE or DIFFERENT; None where
    local features cannot judge (too few keypoints)."""

    kind: str | None
    inliers: int = 0
    detail_correlation: float | None = None  # of the aligned photos' high-pass detail: 1 for an edited copy
    mirrored: bool = False


@dataclass
class _Features:
    grey: np.ndarray  # uint8, scaled to fit MATCH_SIDE
    points: list[np.ndarray]  # keypoint positions, as is and (once a pair wants them) mirrored
    descriptors: list[np.ndarray | None]


class PictureMatcher:
    """Judges pairs of photos under ``root`` (paths relative to it); keeps the keypoints of recently judged photos.
    ``match`` may run in several threads at once (OpenCV releases the GIL)."""

    def __init__(self, root: Path, *, min_inliers: int, min_detail_correlation: float) -> None:
        import cv2  # only audits that verify duplicates load OpenCV

        self._cv2 = cv2
        self.root = root
        self.min_inliers = min_inliers
        self.min_detail_correlation = min_detail_correlation
        self._local = threading.local()  # OpenCV's detector and matcher are not shared between threads
        self._adding = threading.Lock()
        self.features = functools.lru_cache(maxsize=FEATURE_CACHE)(self._features)

    def _tools(self) -> tuple:
        if not hasattr(self._local, "orb"):
            self._local.orb = self._cv2.ORB_create(nfeatures=KEYPOINTS)
            self._local.matcher = self._cv2.BFMatcher(self._cv2.NORM_HAMMING)
        return self._local.orb, self._local.matcher

    def match(self, first: str, second: str) -> PairMatch:
        """The kind of the pair ``first``, ``second``; None when either photo is too small or flat for keypoints (or
        no longer decodes)."""
        a, b = self.features(first), self.features(second)
        if a is None or b is None or min(len(a.points[0]), len(b.points[0])) < MIN_KEYPOINTS:
            return PairMatch(None)
        self._mirrored(b)
        fits = [
            (self._fit(a.points[0], a.descriptors[0], b.points[side], b.descriptors[side]), side) for side in (0, 1)
        ]
        (inliers, transform), side = max(fits, key=lambda fit: fit[0][0])
        if inliers < self.min_inliers:
            return PairMatch(DIFFERENT, inliers, None, bool(side))
        other = b.grey[:, ::-1] if side else b.grey
        detail = self._detail_correlation(a.grey, np.ascontiguousarray(other), transform)
        kind = ONE_PICTURE if detail >= self.min_detail_correlation else ONE_SCENE
        return PairMatch(kind, inliers, round(detail, 3), bool(side))

    def _features(self, path: str) -> _Features | None:
        try:
            decoded = decode_image(self.root / path, (MATCH_SIDE, MATCH_SIDE)).pixels
        except (OSError, ImageDecodeError, OversizedImageError):
            return None
        decoded.thumbnail((MATCH_SIDE, MATCH_SIDE), Image.Resampling.BILINEAR)
        grey = np.asarray(decoded.convert("L"))
        points, descriptors = self._keypoints(grey)
        return _Features(grey, [points], [descriptors])

    def _mirrored(self, features: _Features) -> None:
        """Add the mirror image's keypoints, which only the second photo of a pair needs: half the keypoint work of
        a photo that is only ever first. Two threads may both compute them: the same keypoints, added once."""
        if len(features.points) == 1:
            points, descriptors = self._keypoints(np.ascontiguousarray(features.grey[:, ::-1]))
            with self._adding:
                if len(features.points) == 1:
                    features.points.append(points)
                    features.descriptors.append(descriptors)

    def _keypoints(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        keypoints, descriptors = self._tools()[0].detectAndCompute(grey, None)
        return np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2), descriptors

    def _fit(
        self, points_a: np.ndarray, descriptors_a: np.ndarray | None, points_b: np.ndarray, descriptors_b: np.ndarray
    ) -> tuple[int, np.ndarray | None]:
        """RANSAC inliers of the similarity transform taking ``a``'s keypoints onto ``b``'s, and the transform; a
        degenerate one (collapsing or exploding the picture) counts as no match."""
        cv2 = self._cv2
        if descriptors_a is None or descriptors_b is None or len(descriptors_a) < 2 or len(descriptors_b) < 2:
            return 0, None
        pairs = self._tools()[1].knnMatch(descriptors_a, descriptors_b, k=2)
        good = [
            best
            for best, second in (pair for pair in pairs if len(pair) == 2)
            if best.distance < RATIO * second.distance
        ]
        if len(good) < 3:
            return 0, None
        source = points_a[[match.queryIdx for match in good]]
        target = points_b[[match.trainIdx for match in good]]
        transform, inliers = cv2.estimateAffinePartial2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION_PX, maxIters=2000, confidence=0.995
        )
        if transform is None:
            return 0, None
        scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))
        if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            return 0, None
        return int(inliers.sum()), transform

    def _detail_correlation(self, grey_a: np.ndarray, grey_b: np.ndarray, transform: np.ndarray) -> float:
        """Correlation of the high-pass detail where the photos overlap, compared at the coarser photo's scale (the
        finer one is warped onto it, so an enlarged crop is not blamed for the detail it never had)."""
        cv2 = self._cv2
        if abs(np.linalg.det(transform[:, :2])) > 1:  # b shows the picture larger: bring b onto a instead
            grey_a, grey_b, transform = grey_b, grey_a, cv2.invertAffineTransform(transform)
        height, width = grey_b.shape
        warped = cv2.warpAffine(grey_a.astype(np.float32), transform, (width, height), flags=cv2.INTER_AREA)
        inside = cv2.warpAffine(np.ones(grey_a.shape, np.uint8), transform, (width, height), flags=cv2.INTER_NEAREST)
        inside = cv2.erode(inside, np.ones((5, 5), np.uint8)) > 0
        if inside.sum() < MIN_OVERLAP_PX:
            return 0.0
        detail_a = _detail(warped)[inside]
        detail_b = _detail(grey_b.astype(np.float32))[inside]
        detail_a, detail_b = detail_a - detail_a.mean(), detail_b - detail_b.mean()
        spread = float(np.sqrt((detail_a**2).sum() * (detail_b**2).sum()))
        return float((detail_a * detail_b).sum() / spread) if spread > 0 else 0.0


_KINDS = (None, ONE_PICTURE, ONE_SCENE, DIFFERENT)
_RECORD = np.dtype([("kind", "u1"), ("inliers", "<i4"), ("detail", "<f4"), ("mirrored", "u1")])
# Bytes a kept match takes on disk (its key and record, with room for the shards' own overhead).
_KEPT_BYTES = 64


class KeptMatches:
    """Pair matches kept between audits, by the two photos' contents and the thresholds they were judged by, so that a
    re-audit (a pull request's) matches only the pairs a new or edited photo is in: the rest were judged already.

    They live beside the image-property cache, in a folder of their own that ``cache prune`` leaves alone (its keys
    name pairs, not contents); once it holds far more than the latest audit's pairs, it is cut to those.
    """

    def __init__(self, root: Path, matcher: PictureMatcher) -> None:
        self.store = ShardStore(Path(root) / "pair-matches" / f"v{MATCH_VERSION}", dtype=_RECORD, what="pair matches")
        self._salt = f"{matcher.min_inliers}:{matcher.min_detail_correlation}"

    def key(self, first: str, second: str) -> str:
        """The key of the pair of contents ``first``, ``second`` (SHA-1 content keys), in that order."""
        return hashlib.sha1(f"{self._salt}:{first}:{second}".encode()).hexdigest()

    def read(self, keys: Sequence[str]) -> dict[str, PairMatch]:
        """The kept matches of ``keys`` (a damaged shard is dropped: its pairs are matched again)."""
        unique = sorted(set(keys))
        records = np.zeros((len(unique), 1), _RECORD)
        found = self.store.read(unique, records).found
        return {
            key: PairMatch(
                _KINDS[record["kind"]],
                int(record["inliers"]),
                None if np.isnan(record["detail"]) else round(float(record["detail"]), 3),
                bool(record["mirrored"]),
            )
            for key, record, hit in zip(unique, records[:, 0], found, strict=True)
            if hit
        }

    def keep(self, matches: dict[str, PairMatch], wanted: Sequence[str]) -> None:
        """Add the new ``matches``; then, if the folder holds far more than the ``wanted`` pairs, drop the others."""
        if matches:
            records = [
                (_KINDS.index(m.kind), m.inliers, np.nan if m.detail_correlation is None else m.detail_correlation,
                 m.mirrored)
                for m in matches.values()
            ]  # fmt: skip
            self.store.add(list(matches), np.array(records, _RECORD).reshape(-1, 1))
            self.store.compact()
        held = sum(shard.stat().st_size for shard in self.store.shards())
        if held > 4 * _KEPT_BYTES * len(wanted) + (1 << 20):
            self.store.prune(set(wanted))


def _detail(grey: np.ndarray) -> np.ndarray:
    import cv2

    return grey - cv2.GaussianBlur(grey, (0, 0), DETAIL_SIGMA)
