"""SavedModel folders, as TF Serving expects them (``serving_default``: ``images`` -> ``probabilities``); the labels
ride along as the classifier's ``labels_file`` asset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from retrain.core.errors import InputError
from retrain.core.settings import RunSettings
from retrain.training.export import ExportedModel, LoadOptions, ModelToExport, failed_write_reason, read_labels

# The SavedModel attribute the labels asset hangs from (``Classifier.labels_file``).
LABELS_ATTRIBUTE = "labels_file"


class SavedModelExporter:
    output_name = "SavedModel folder"
    described = "a SavedModel folder"
    folder = True
    quantized = False

    def output(self, settings: RunSettings) -> Path | None:
        return Path(settings.outputs.saved_model_dir) if "saved_model" in settings.export.formats else None

    def write(self, model: ModelToExport, path: Path) -> None:
        import tensorflow as tf

        classifier = model.classifier
        with _write_errors():
            tf.saved_model.save(classifier, str(path), signatures={"serving_default": classifier.serve})

    def recognises(self, path: Path) -> bool:
        return path.is_dir()

    def load(self, path: Path, options: LoadOptions) -> tuple[ExportedModel, int | None]:
        import tensorflow as tf

        if not (path / "saved_model.pb").is_file():
            raise InputError(f"{path} is not a SavedModel folder (no saved_model.pb in it)")
        model = tf.saved_model.load(str(path))
        serve = model.signatures.get("serving_default")
        if serve is None:
            raise InputError(f"SavedModel {path} has no serving_default signature")
        (input_name, spec), *_ = serve.structured_input_signature[1].items()
        outputs = serve.structured_outputs
        output_spec = outputs["probabilities"] if "probabilities" in outputs else next(iter(outputs.values()))

        def predict(images: np.ndarray) -> np.ndarray:
            outputs = serve(**{input_name: tf.constant(images)})
            return (outputs["probabilities"] if "probabilities" in outputs else next(iter(outputs.values()))).numpy()

        size = (int(spec.shape[1]), int(spec.shape[2]))
        return ExportedModel(path, (), size, predict), output_spec.shape[-1]

    def labels(self, path: Path) -> tuple[str, ...] | None:
        """The asset the root object's ``labels_file`` names, found in saved_model.pb without loading the model."""
        from tensorflow.core.protobuf import saved_model_pb2

        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
        meta_graph = saved_model.meta_graphs[0]
        nodes = meta_graph.object_graph_def.nodes
        for child in nodes[0].children:
            node = nodes[child.node_id]
            if child.local_name == LABELS_ATTRIBUTE and node.WhichOneof("kind") == "asset":
                asset = meta_graph.asset_file_def[node.asset.asset_file_def_index]
                return read_labels(path / "assets" / asset.filename)
        return None


@contextmanager
def _write_errors() -> Iterator[None]:
    """TensorFlow reports a failed write (a full disk) as its own error; the output staging expects an OSError."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as error:
        raise OSError(failed_write_reason(error)) from None
