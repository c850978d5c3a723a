"""TensorFlow Lite flatbuffers (.tflite), quantized as ``--quantize`` asks; the labels ride along as one metadata
entry (one label per line), which interpreters ignore."""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np

from retrain.core.settings import RunSettings
from retrain.training.export import ExportedModel, LoadOptions, ModelToExport
from retrain.training.features import tflite_interpreter

LABELS_METADATA = b"retrain_ci_labels"


class TFLiteExporter:
    output_name = "TensorFlow Lite file"
    described = "a TensorFlow Lite file (.tflite)"
    folder = False
    quantized = True

    def output(self, settings: RunSettings) -> Path | None:
        return Path(settings.export.tflite) if settings.export.tflite else None

    def write(self, model: ModelToExport, path: Path) -> None:
        """``int8`` quantization is calibrated on ``model.calibration_images`` (training images)."""
        import tensorflow as tf

        classifier = model.classifier
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [classifier.__call__.get_concrete_function()], classifier
        )
        if model.quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if model.quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if model.quantize == "int8":
            converter.representative_dataset = lambda: ([image[None]] for image in model.calibration_images)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        Path(path).write_bytes(_with_labels(converter.convert(), classifier.labels))

    def recognises(self, path: Path) -> bool:
        return path.suffix == ".tflite" and not path.is_dir()

    def load(self, path: Path, options: LoadOptions) -> tuple[ExportedModel, int | None]:
        interpreter = tflite_interpreter(path.read_bytes(), num_threads=2)
        input_detail = interpreter.get_input_details()[0]
        output_detail = interpreter.get_output_details()[0]
        _, height, width, _ = input_detail["shape"]

        def predict(images: np.ndarray) -> np.ndarray:
            if interpreter.get_input_details()[0]["shape"][0] != len(images):
                interpreter.resize_tensor_input(input_detail["index"], [len(images), height, width, 3])
                interpreter.allocate_tensors()
            interpreter.set_tensor(input_detail["index"], images.astype(np.float32))
            interpreter.invoke()
            return interpreter.get_tensor(output_detail["index"]).copy()

        return ExportedModel(path, (), (int(height), int(width)), predict), int(output_detail["shape"][-1])

    def labels(self, path: Path) -> tuple[str, ...] | None:
        from tensorflow.lite.python import schema_py_generated as tflite_schema

        root = tflite_schema.Model.GetRootAs(path.read_bytes(), 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if entry.Name() == LABELS_METADATA:
                return tuple(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode().split("\n"))
        return None


def _with_labels(model: bytes, labels: tuple[str, ...]) -> bytes:
    """The flatbuffer with one more metadata entry (a name and a buffer), which interpreters ignore."""
    from tensorflow.lite.python import schema_py_generated as tflite_schema

    unpacked = tflite_schema.ModelT.InitFromObj(tflite_schema.Model.GetRootAs(model, 0))
    buffer = tflite_schema.BufferT()
    buffer.data = np.frombuffer("\n".join(labels).encode(), dtype=np.uint8)
    unpacked.buffers.append(buffer)
    entry = tflite_schema.MetadataT()
    entry.name, entry.buffer = LABELS_METADATA, len(unpacked.buffers) - 1
    unpacked.metadata = [*(unpacked.metadata or []), entry]
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(unpacked.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
