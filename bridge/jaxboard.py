"""TensorBoard logging under Objax's names (``objax.jaxboard``).

Fill a ``Summary`` with scalars, images and text for one step, then write it with a
``SummaryWriter``, which appends TensorBoard event files to a directory. Scalars added
several times under one tag in a summary are reduced to one value (the mean by default)
when it is written.

Writing needs tensorboardX (``pip install "jax-bridge[jaxboard]"``), imported when a
``SummaryWriter`` is created or a ``Summary`` is turned into its protocol buffer; building a
``Summary`` needs nothing, and ``Summary.image`` needs Pillow (in the same extra).

Example::

    from bridge import jaxboard

    with jaxboard.SummaryWriter('logs/run1') as writer:
        for epoch in range(epochs):
            summary = jaxboard.Summary()
            for x, y in batches:
                summary.scalar('loss/train', float(train_op(x, y)))   # averaged per epoch
            summary.scalar('lr', lr, reduce=jaxboard.Reducer.LAST)
            summary.image('samples', sample_chw)                      # (C, H, W) in [-1, 1]
            summary.text('notes', f'epoch {epoch}')
            writer.write(summary, step=epoch)

Then ``tensorboard --logdir logs``.
"""

from __future__ import annotations

import enum
import os
from typing import Any, Callable, Sequence, Union

import numpy as np

from bridge._optional import import_optional
from bridge.util import image as _image

__all__ = ["DelayedScalar", "Image", "Reducer", "Summary", "SummaryWriter", "Text"]


def _tensorboardx() -> Any:
    return import_optional("tensorboardX", "jaxboard", "bridge.jaxboard (TensorBoard files)")


class Reducer(enum.Enum):
    """How the values added under one scalar tag become the one value written.

    ``FIRST`` and ``LAST`` keep the first or last value added, ``MEAN`` their mean. Members
    are callable on the list of values: ``Reducer.MEAN([1.0, 2.0]) == 1.5``.
    """

    FIRST = "first"
    LAST = "last"
    MEAN = "mean"

    def __call__(self, values: Sequence[Any]) -> Any:
        if self is Reducer.FIRST:
            return values[0]
        if self is Reducer.LAST:
            return values[-1]
        return np.mean(values)


class DelayedScalar:
    """The values added under one scalar tag, reduced when the summary is written.

    Attributes:
      values: the values, in the order they were added.
      reduce: a ``Reducer`` or any function from that list to one number.
    """

    def __init__(self, reduce: Union[Reducer, Callable[[list], Any]]):
        self.values: list = []
        self.reduce = reduce

    def __call__(self) -> Any:
        """The reduced value."""
        return self.reduce(self.values)


class Image:
    """An image entry: its ``(C, H, W)`` shape and its PNG encoding."""

    def __init__(self, shape: tuple[int, int, int], png: bytes):
        self.shape = tuple(shape)
        self.png = png


class Text:
    """A text entry (rendered as Markdown by TensorBoard)."""

    def __init__(self, text: str):
        self.text = text


class Summary(dict):
    """The entries of one step: ``{tag: DelayedScalar | Image | Text}``.

    Calling the summary returns it as a TensorBoard ``Summary`` protocol buffer
    (tensorboardX's ``summary_pb2.Summary``), one value per tag, in insertion order.
    """

    def scalar(self, tag: str, value: Any,
               reduce: Union[Reducer, Callable[[list], Any]] = Reducer.MEAN) -> None:
        """Add ``value`` to the scalar ``tag``; all values added are reduced when written.

        ``reduce`` is taken from the first call for a tag; later ones keep it.

        Raises:
          ValueError: ``tag`` already holds an image or a text.
        """
        entry = self.setdefault(tag, DelayedScalar(reduce))
        if not isinstance(entry, DelayedScalar):
            raise ValueError(f"Summary tag {tag!r} already holds a {type(entry).__name__}, "
                             f"not a scalar.")
        entry.values.append(value)

    def image(self, tag: str, image: Any) -> None:
        """Set ``tag`` to an image: ``(C, H, W)`` floats in [-1, 1] (or uint8), C = 1, 3 or 4.

        The image is encoded as PNG now (``bridge.util.image.to_png``), so later changes to
        the array do not affect it.
        """
        self[tag] = Image(np.shape(image), _image.to_png(image))

    def text(self, tag: str, text: str) -> None:
        """Set ``tag`` to a text."""
        self[tag] = Text(text)

    def __call__(self) -> Any:
        """The entries as a TensorBoard ``Summary`` protocol buffer.

        Scalars become ``simple_value``s, images ``Summary.Image``s holding the PNG, texts
        string tensors for TensorBoard's text plugin.
        """
        _tensorboardx()  # a clear error if it is missing
        from tensorboardX.proto import plugin_text_pb2, summary_pb2, tensor_pb2
        from tensorboardX.proto import tensor_shape_pb2 as shape_pb2

        values = []
        for tag, entry in self.items():
            if isinstance(entry, DelayedScalar):
                values.append(summary_pb2.Summary.Value(tag=tag, simple_value=float(entry())))
            elif isinstance(entry, Image):
                channels, height, width = entry.shape
                encoded = summary_pb2.Summary.Image(
                    height=height, width=width, encoded_image_string=entry.png,
                    colorspace=3 if channels == 1 else channels)  # grey is written as RGB
                values.append(summary_pb2.Summary.Value(tag=tag, image=encoded))
            elif isinstance(entry, Text):
                plugin = summary_pb2.SummaryMetadata.PluginData(
                    plugin_name="text",
                    content=plugin_text_pb2.TextPluginData(version=0).SerializeToString())
                tensor = tensor_pb2.TensorProto(
                    dtype="DT_STRING", string_val=[entry.text.encode("utf-8")],
                    tensor_shape=shape_pb2.TensorShapeProto(
                        dim=[shape_pb2.TensorShapeProto.Dim(size=1)]))
                values.append(summary_pb2.Summary.Value(
                    tag=tag, metadata=summary_pb2.SummaryMetadata(plugin_data=plugin),
                    tensor=tensor))
            else:
                raise TypeError(f"Summary tag {tag!r} holds an entry of type "
                                f"{type(entry).__name__}; expected a DelayedScalar, an Image "
                                "or a Text.")
        return summary_pb2.Summary(value=values)


class SummaryWriter:
    """Appends summaries to a TensorBoard event file in ``logdir``.

    Args:
      logdir: the directory of the event file (created if missing).
      queue_size: how many summaries may wait in memory before a write forces them to disk.
      write_interval: at most how many seconds summaries wait before being written.

    Raises:
      ImportError: tensorboardX is not installed (the ``jaxboard`` extra).

    Use it as a context manager, or call ``close()``, so that the last summaries are
    written::

        with SummaryWriter('logs/run1') as writer:
            writer.write(summary, step=0)
    """

    def __init__(self, logdir: Union[str, os.PathLike], queue_size: int = 5,
                 write_interval: int = 5):
        tensorboardx = _tensorboardx()
        os.makedirs(logdir, exist_ok=True)
        self.logdir = os.fspath(logdir)
        self.writer = tensorboardx.FileWriter(self.logdir, max_queue=queue_size,
                                              flush_secs=write_interval)

    def write(self, summary: Summary, step: int) -> None:
        """Queue ``summary`` as the event of ``step`` (timestamped now)."""
        self.writer.add_summary(summary(), global_step=step)

    def flush(self) -> None:
        """Write the queued summaries to disk now."""
        self.writer.flush()

    def close(self) -> None:
        """Write the queued summaries and close the event file."""
        self.writer.close()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.close()
