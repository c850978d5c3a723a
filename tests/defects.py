"""Build defective datasets from real flower photos: one helper per defect, so each test says what it planted."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from sklearn.datasets import load_digits

from retrain.core.dataset import split_for


def copy_in_other_split(photo: Path, folder: Path, stem: str) -> Path:
    """A byte-identical copy whose name puts it in another split than the original (default percentages)."""
    original = split_for(photo, 10, 10)
    name = next(f"{stem}-{i}.jpg" for i in range(1000) if split_for(f"{stem}-{i}.jpg", 10, 10) != original)
    return Path(shutil.copy(photo, folder / name))


def linked_or_copied(source: Path, target: Path) -> Path:
    """A hard link to ``source`` (a copy across file systems): the audit skips symbolic links that leave the dataset,
    and a copy of flowers-dev would cost 117 MB a dataset."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)
    return target


def truncated(photo: Path, target: Path) -> Path:
    target.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    return target


def edited(photo: Path, target: Path, edit: Callable[[Image.Image], Image.Image], **save_options) -> Path:
    with Image.open(photo) as image:
        edit(image.convert("RGB")).save(target, **save_options)
    return target


def resized(image: Image.Image) -> Image.Image:
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)


def darkened(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(0.12)


def washed_out(image: Image.Image) -> Image.Image:
    return Image.blend(image, Image.new("RGB", image.size, "white"), 0.85)


def brightened(factor: float) -> Callable[[Image.Image], Image.Image]:
    """Every pixel value times ``factor``: highlights clip to white, saturated colours to yellow, cyan or magenta."""
    return lambda image: ImageEnhance.Brightness(image).enhance(factor)


def blurred(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(5))


def blank(image: Image.Image) -> Image.Image:
    return Image.new("RGB", image.size, (128, 126, 130))


def black_and_white(image: Image.Image) -> Image.Image:
    return image.convert("L")


def thumbnail(image: Image.Image) -> Image.Image:
    return image.resize((48, 36))


def strip(image: Image.Image) -> Image.Image:
    return image.crop((0, 0, image.width, image.width // 5))


def tinted(colour: tuple[int, int, int]) -> Callable[[Image.Image], Image.Image]:
    """The blue room and the green room: a strong colour cast over the whole photo."""
    return lambda image: Image.blend(image, Image.new("RGB", image.size, colour), 0.45)


def cropped(image: Image.Image) -> Image.Image:
    """80% of each side, from a corner: a crop that moves the subject."""
    return image.crop((image.width // 5, image.height // 5, image.width, image.height))


def mirrored(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def recoloured(image: Image.Image) -> Image.Image:
    """A colour edit: more saturation and contrast, as a photo editor's "vivid" preset."""
    return ImageEnhance.Contrast(ImageEnhance.Color(image).enhance(1.6)).enhance(1.2)


def rotated(image: Image.Image) -> Image.Image:
    """Five degrees, corners filled black: a straightened horizon."""
    return image.rotate(5, Image.Resampling.BICUBIC)


# Copies that are one picture to a person but not to a perceptual hash.
EDITS = {"crop": cropped, "mirror": mirrored, "colour": recoloured, "rotation": rotated}


def leaked_edits(root: Path) -> dict[str, tuple[str, str]]:
    """For each of EDITS, an edited copy of a different test photo of ``root``, named so that it falls in training.

    Returns edit -> (original, copy), relative to ``root``.
    """
    tests = [photo for photo in sorted(root.glob("*/*.jpg")) if split_for(photo.name, 10, 10) == "testing"]
    planted = {}
    for (name, edit), photo in zip(EDITS.items(), tests, strict=False):
        copy = next(
            photo.with_name(f"{photo.stem}-{name}-{i}.jpg")
            for i in range(1000)
            if split_for(f"{photo.stem}-{name}-{i}.jpg", 10, 10) == "training"
        )
        edited(photo, copy, edit, quality=90)
        planted[name] = (photo.relative_to(root).as_posix(), copy.relative_to(root).as_posix())
    return planted


def screenshot(size: tuple[int, int] = (500, 375)) -> Image.Image:
    """What a phone screenshot of an app looks like: a title bar, lines of text and a button on white; no flower."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle((0, 0, width, height // 8), fill=(33, 99, 186))
    draw.text((12, height // 24), "Photos - Settings", fill="white")
    for line in range(8):
        top = height // 5 + line * height // 14
        draw.text((16, top), f"Option {line + 1}: sync albums over Wi-Fi only", fill=(40, 40, 40))
        draw.line((16, top + height // 20, width - 16, top + height // 20), fill=(220, 220, 220))
    button = (width // 3, height - height // 8, 2 * width // 3, height - height // 30)
    draw.rounded_rectangle(button, 8, fill=(0, 150, 80))
    return image


def exif_rotated(photo: Path, target: Path) -> Path:
    """Stored landscape with EXIF orientation 6, so it is displayed (and must be read) as portrait."""
    with Image.open(photo) as image:
        exif = Image.Exif()
        exif[0x0112] = 6
        image.convert("RGB").save(target, exif=exif)
    return target


def build_defective_dataset(flowers_sample: Path, root: Path) -> dict[str, list[str]]:
    """Four classes of 25 photos, a tiny class, an empty class, and one instance of every defect the audit looks for.

    Returns what was planted: check id -> paths (relative to ``root``) that check must report. Each edited photo is a
    spare one not otherwise in the dataset, so that no defect is also an accidental near-duplicate of another photo.
    """
    spare = {label: sorted((flowers_sample / label).glob("*.jpg"))[25:] for label in ("daisy", "dandelion")}
    for label in ("daisy", "dandelion", "roses", "sunflowers"):
        (root / label).mkdir(parents=True)
        for photo in sorted((flowers_sample / label).glob("*.jpg"))[:25]:
            shutil.copy(photo, root / label / photo.name)
    tulips = sorted((flowers_sample / "tulips").glob("*.jpg"))
    (root / "tulips").mkdir()
    names = (f"tulip-{i}.jpg" for i in range(1000) if split_for(f"tulip-{i}.jpg", 10, 10) == "training")
    for photo, name in zip(tulips[:6], names, strict=False):  # 6 photos, all in the training split
        shutil.copy(photo, root / "tulips" / name)
    (root / "lilies").mkdir()
    (root / "lilies" / "notes.txt").write_text("photos to come")
    (root / "daisy" / "README.txt").write_text("daisies from the garden")
    (root / "LICENSE.txt").write_text("CC-BY")
    shutil.copy(spare["dandelion"][0], root / "stray.jpg")
    daisy = sorted((root / "daisy").glob("*.jpg"))
    near = shutil.copy(spare["daisy"][0], root / "daisy" / "original.jpg")
    planted = {
        "corrupt_image": [
            truncated(spare["daisy"][1], root / "daisy" / "truncated.jpg"),
            _written(root / "daisy" / "actually text.jpg", b"this is not a JPEG"),
            _written(root / "dandelion" / "empty.jpg", b""),
        ],
        "non_image_file": [root / "daisy" / "README.txt", root / "lilies" / "notes.txt"],
        "stray_file": [root / "stray.jpg", root / "LICENSE.txt"],
        "empty_class": [root / "lilies"],
        "too_few_images": [root / "tulips"],
        "class_imbalance": [root / "tulips"],
        "split_starved": [root / "tulips"],
        "exact_duplicates": [daisy[0], copy_in_other_split(daisy[0], root / "daisy", "daisy-again")],
        "conflicting_labels": [
            daisy[1],
            Path(shutil.copy(daisy[1], root / "dandelion" / daisy[1].name)),
        ],
        "near_duplicates": [
            near,
            edited(near, root / "daisy" / "original-resized.jpg", resized, quality=90),
            edited(near, root / "daisy" / "original-reencoded.jpg", lambda image: image, quality=30),
        ],
        "tiny_image": [edited(spare["daisy"][2], root / "daisy" / "thumbnail.jpg", thumbnail)],
        "odd_aspect_ratio": [edited(spare["daisy"][3], root / "daisy" / "strip.jpg", strip)],
        "dark": [edited(spare["daisy"][4], root / "daisy" / "dark.jpg", darkened)],
        "light": [edited(spare["daisy"][5], root / "daisy" / "washed out.jpg", washed_out)],
        "overexposed": [edited(spare["daisy"][11], root / "daisy" / "overexposed.jpg", brightened(6), quality=90)],
        "blurry": [edited(spare["daisy"][6], root / "daisy" / "blurred.jpg", blurred)],
        "low_information": [edited(spare["daisy"][7], root / "daisy" / "blank.jpg", blank)],
        "grayscale": [edited(spare["daisy"][8], root / "daisy" / "black and white.jpg", black_and_white)],
    }
    planted["split_leakage"] = planted["exact_duplicates"]
    return {check: [path.relative_to(root).as_posix() for path in paths] for check, paths in planted.items()}


def add_valid_unusual_files(photos: list[Path], folder: Path) -> list[Path]:
    """Files that are unusual but valid, which must load and raise nothing: one per source photo."""
    cmyk, alpha, upper, webp, bmp, rotated, named = photos[:7]
    return [
        edited(cmyk, folder / "cmyk.jpg", lambda image: image.convert("CMYK"), quality=90),
        edited(alpha, folder / "with alpha.png", _with_alpha),
        Path(shutil.copy(upper, folder / "UPPER CASE.JPG")),
        edited(webp, folder / "photo.webp", lambda image: image),
        edited(bmp, folder / "photo.BMP", lambda image: image),
        exif_rotated(rotated, folder / "rotated.jpg"),
        Path(shutil.copy(named, folder / "fleur d'été №1 花.jpg")),
    ]


def _with_alpha(image: Image.Image) -> Image.Image:
    image = image.convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    return image


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def moved_labels(labels: list[str], fraction: float, seed: int) -> list[str]:
    """``labels`` with ``fraction`` of them, drawn by ``seed``, each moved to another class drawn by the same seed."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    moved = list(labels)
    for index in rng.choice(len(labels), round(fraction * len(labels)), replace=False):
        moved[index] = str(rng.choice([label for label in classes if label != labels[index]]))
    return moved


def digits_dataset(root: Path, *, moved_fraction: float = 0.02, seed: int = 0, scale: int = 8) -> list[str]:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels) as grayscale PNGs ``scale`` times larger, one
    folder per digit, with ``moved_fraction`` of them filed under another digit: far from the backbone's ImageNet
    photos, where a mislabel check must not go silent. Returns the moved files, relative to ``root``."""
    digits = load_digits()
    truth = [str(target) for target in digits.target]
    given = moved_labels(truth, moved_fraction, seed)
    moved = []
    for index, (pixels, label) in enumerate(zip(digits.images, given, strict=True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray((pixels * (255 / 16)).astype(np.uint8), "L")
        image.resize((8 * scale, 8 * scale), Image.Resampling.BILINEAR).save(root / label / f"digit-{index:04d}.png")
        if label != truth[index]:
            moved.append(f"{label}/digit-{index:04d}.png")
    return moved
