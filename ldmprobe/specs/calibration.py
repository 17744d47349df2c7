"""A labelled calibration set for attribute rates (``calibration = PATH``): which images show
which option, from GROUP/OPTION/* folders or a path,group,option CSV. Reads names only."""

from __future__ import annotations

from pathlib import Path

from ldmprobe.errors import BadInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def calibration_files(path: str | Path, groups) -> dict[str, list[tuple[Path, int]]]:
    """group -> [(image, true option index)] from GROUP/OPTION/* folders or a path,group,option CSV.

    A folder or row naming an option the spec does not have is an error (exit 2), as is a
    group of the spec with no calibration image of some option."""
    import csv

    path = Path(path)
    options = {name: opts for name, opts in groups}
    found: dict[str, list[tuple[Path, int]]] = {}

    def add(group: str, option: str, image: Path, where: str):
        if group not in options:
            return  # a calibration set may cover groups the spec does not use
        if option not in options[group]:
            raise BadInputError(f"{where}: option {option!r} is not an option of attribute group {group} "
                                f"({', '.join(options[group])}); rename it or add it to [attributes.{group}].")
        _check_image(image, where)
        found.setdefault(group, []).append((image, options[group].index(option)))

    if path.is_dir():
        for group_dir in sorted(p for p in path.iterdir() if p.is_dir()):
            for option_dir in sorted(p for p in group_dir.iterdir() if p.is_dir()):
                if group_dir.name in options and option_dir.name not in options[group_dir.name]:
                    add(group_dir.name, option_dir.name, option_dir, str(option_dir))  # raises: not an option
                for image in sorted(option_dir.iterdir()):
                    if image.suffix.lower() in IMAGE_SUFFIXES:
                        add(group_dir.name, option_dir.name, image, f"calibration folder {option_dir}")
    else:
        with open(path, newline="", encoding="utf-8") as handle:
            for n, row in enumerate(csv.DictReader(handle), start=2):
                if not {"path", "group", "option"} <= set(row):
                    raise BadInputError(f"{path}: a calibration manifest needs path, group and option columns.")
                image = Path(row["path"]) if Path(row["path"]).is_absolute() else path.parent / row["path"]
                add(row["group"].strip(), row["option"].strip(), image, f"{path} line {n} (path {row['path']!r})")
    for group, opts in options.items():
        have = {i for _, i in found.get(group, [])}
        lacking = [o for i, o in enumerate(opts) if i not in have]
        if lacking:
            raise BadInputError(f"calibration set {path}: no image of {', '.join(lacking)} in group {group}; every "
                                f"option needs labelled images for the measurer's errors to be estimated.")
    return found


def _check_image(image: Path, where: str) -> None:
    """A calibration image exists and opens (its header only), before any model loads; else an
    error naming the image and the manifest line or folder that lists it."""
    from PIL import UnidentifiedImageError

    from ldmprobe.specs.files import check_image

    if not image.is_file():
        raise BadInputError(f"{where}: calibration image {image} does not exist; fix the path (a relative path is "
                            "read against the manifest's folder) or remove the line.")
    try:
        check_image(image.read_bytes())
    except (UnidentifiedImageError, SyntaxError) as exc:
        raise BadInputError(f"{where}: calibration image {image} is not a readable image ({type(exc).__name__}: "
                            "PIL cannot identify its format); replace or remove it.") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{where}: calibration image {image} cannot be read ({exc}); replace or remove "
                            "it.") from None
