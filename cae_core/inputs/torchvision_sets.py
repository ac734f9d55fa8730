"""Benchmarks that torchvision downloads (evaluation splits), written once as ImageFolders of PNG files."""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import CaeError
from ..files import atomic_folder
from .archives import safe_name


@dataclass(frozen=True)
class Benchmark:
    """A torchvision dataset: ``load(download_root)`` returns (dataset, class names, labels or None).

    ``labels`` overrides the labels of the dataset's ``(image, label)`` items when given.
    """

    description: str
    load: Callable[[Path], tuple[Sequence, list[str], Sequence[int] | None]]


def _torchvision_set(class_name: str, **options: Any) -> Callable[[Path], tuple[Sequence, list[str], None]]:
    def load(root: Path) -> tuple[Sequence, list[str], None]:
        import torchvision.datasets

        dataset = getattr(torchvision.datasets, class_name)(str(root), download=True, **options)
        return dataset, list(dataset.classes), None
    return load


def _load_cifar20(root: Path) -> tuple[Sequence, list[str], list[int]]:
    """CIFAR-100 test set labelled by its 20 superclasses, which torchvision reads but does not expose."""
    dataset, _, _ = _torchvision_set("CIFAR100", train=False)(root)
    folder = Path(dataset.root) / dataset.base_folder
    # The files were checked against their published MD5 by torchvision before this reads them.
    with open(folder / dataset.test_list[0][0], "rb") as stream:
        labels = pickle.load(stream, encoding="latin1")["coarse_labels"]
    with open(folder / dataset.meta["filename"], "rb") as stream:
        names = pickle.load(stream, encoding="latin1")["coarse_label_names"]
    return dataset, names, labels


#: Benchmarks that :func:`open_image_source` downloads through torchvision (evaluation splits).
BENCHMARKS: dict[str, Benchmark] = {
    "cifar10": Benchmark("CIFAR-10 test set, 10,000 images, 10 classes", _torchvision_set("CIFAR10", train=False)),
    "cifar100": Benchmark("CIFAR-100 test set, 10,000 images, 100 classes",
                          _torchvision_set("CIFAR100", train=False)),
    "cifar20": Benchmark("CIFAR-100 test set labelled by its 20 superclasses", _load_cifar20),
    "stl10": Benchmark("STL-10 test set, 8,000 images, 10 classes", _torchvision_set("STL10", split="test")),
    "dtd": Benchmark("Describable Textures test split 1, 1,880 images, 47 classes",
                     _torchvision_set("DTD", split="test", partition=1)),
}


def materialise_benchmark(name: str, work_dir: Path, offline_example: str) -> Path:
    """Download (once) and write a benchmark as an ImageFolder of PNG files under ``work_dir``; its folder.

    ``offline_example`` names a local folder the error suggests instead when the download fails."""
    folder = work_dir / "benchmarks" / name
    if not folder.is_dir():
        try:
            dataset, class_names, labels = BENCHMARKS[name].load(work_dir / "downloads")
        except (OSError, RuntimeError, HTTPException) as error:
            raise CaeError(f"cannot download the torchvision benchmark {name!r} ({error}); without internet, "
                           f"point --images at a folder of images instead, e.g. {offline_example}") from None
        atomic_folder(folder, functools.partial(_write_image_folder, dataset, class_names, labels))
    return folder


def _write_image_folder(dataset: Sequence, class_names: list[str], labels: Sequence[int] | None,
                        folder: Path) -> None:
    """Save ``(image, label)`` items as ``<class name>/<rank in class>.png``."""
    class_folders = [folder / safe_name(class_name) for class_name in class_names]
    for class_folder in class_folders:
        class_folder.mkdir()
    counts = [0] * len(class_names)
    for index in range(len(dataset)):
        image, label = dataset[index]
        label = int(labels[index] if labels is not None else label)
        image.save(class_folders[label] / f"{counts[label]:05d}.png")
        counts[label] += 1
