"""Frozen graphs (.pb), as TensorFlow's label_image.py reads them: fed through ``Placeholder``, read from the final
tensor name; the labels ride along as the constant node ``LABELS_NODE``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from retrain.core.errors import InputError
from retrain.core.settings import RunSettings
from retrain.training.export import LABELS_NODE, ExportedModel, LoadOptions, ModelToExport

if TYPE_CHECKING:
    import tensorflow as tf


class FrozenGraphExporter:
    output_name = "frozen graph"
    described = "a frozen graph (.pb)"
    folder = False
    quantized = False

    def output(self, settings: RunSettings) -> Path | None:
        return Path(settings.outputs.output_graph) if "frozen_graph" in settings.export.formats else None

    def write(self, model: ModelToExport, path: Path) -> None:
        Path(path).write_bytes(model.graph_def.SerializeToString())

    def recognises(self, path: Path) -> bool:
        return path.suffix == ".pb" and not path.is_dir()

    def load(self, path: Path, options: LoadOptions) -> tuple[ExportedModel, int | None]:
        import tensorflow as tf

        graph = tf.Graph()
        with graph.as_default():
            tf.compat.v1.import_graph_def(_graph_def(path), name="")
        try:
            input_tensor = graph.get_tensor_by_name(f"{options.input_layer}:0")
            output_tensor = graph.get_tensor_by_name(f"{options.output_layer}:0")
        except KeyError as error:
            raise InputError(f"{path}: {error.args[0]}; check --input-layer / --output-layer") from None
        declared = input_tensor.shape
        height = options.image_size[0] or (declared[1] if declared.rank == 4 else None)
        width = options.image_size[1] or (declared[2] if declared.rank == 4 else None)
        if height is None or width is None:
            raise InputError(f"{path} does not declare its input size; pass --input-height and --input-width")
        session = tf.compat.v1.Session(graph=graph)
        classes = output_tensor.shape[-1] if output_tensor.shape.rank else None
        model = ExportedModel(
            path, (), (int(height), int(width)), lambda images: session.run(output_tensor, {input_tensor: images})
        )
        return model, classes

    def labels(self, path: Path) -> tuple[str, ...] | None:
        import tensorflow as tf

        for node in _graph_def(path).node:
            if node.name == LABELS_NODE:
                return tuple(label.decode() for label in tf.make_ndarray(node.attr["value"].tensor).tolist())
        return None


def _graph_def(path: Path) -> tf.compat.v1.GraphDef:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception:
        raise InputError(f"{path} is not a frozen TensorFlow graph") from None
    return graph_def
