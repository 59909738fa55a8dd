"""The attention encoder's inference forward pass written in TensorFlow (oneDNN on CPU).

Only for benchmarks/cpu_inference.py: it runs the *same* conv stack with the
*same* trained variables, so "faster than TensorFlow" is measured on equal
work, and the benchmark checks that both give the same embeddings first.  The
same graph converted to TensorFlow Lite runs on XNNPACK, the CPU kernels made
for small convolutions on phones, as a second reference (`build_tflite_encoder`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def build_tf_encoder(model_config, variables: dict[str, Any]) -> Callable:
  """A tf.function [B, 64, 96, 1] -> [B, d] equal to AttentionEncoder.apply(train=False)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  params = variables["params"]
  stats = variables["batch_stats"]
  const = lambda a: tf.constant(np.asarray(a, np.float32))

  def conv(x, p, stride, pad):
    paddings = [[0, 0], [pad, pad], [pad, pad], [0, 0]]
    return tf.nn.conv2d(x, const(p["kernel"]), strides=stride, padding=paddings)

  def bn(x, p, s):
    scale = np.asarray(p["scale"]) / np.sqrt(np.asarray(s["var"]) + 1e-5)
    shift = np.asarray(p["bias"]) - np.asarray(s["mean"]) * scale
    return x * const(scale) + const(shift)

  def attention(x, p, scale):
    spect = tf.nn.softmax(tf.tanh(tf.einsum("bftc,tc->bfc", x, const(p["w_spect"]))), axis=1)
    temp = tf.nn.softmax(tf.tanh(tf.einsum("bftc,fc->btc", x, const(p["w_temp"]))), axis=1)
    return scale * spect[:, :, None, :] * temp[:, None, :, :] * x

  s_att = float(model_config.attention_scale)
  n_blocks = len(model_config.widths) - 1

  @tf.function(jit_compile=False)
  def forward(x):
    x = tf.nn.relu(bn(conv(x, params["stem_conv"], 1, 1), params["stem_bn"], stats["stem_bn"]))
    for i in range(n_blocks):
      name = f"res{i + 1}"
      p, s = params[name], stats[name]
      stride = 1 if i == 0 else 2
      y = tf.nn.relu(bn(conv(x, p["conv1"], stride, 1), p["bn1"], s["bn1"]))
      y = attention(y, p["att1"], s_att)
      y = bn(conv(y, p["conv2"], 1, 1), p["bn2"], s["bn2"])
      shortcut = conv(x, p["shortcut"], stride, 0) if "shortcut" in p else x
      x = attention(tf.nn.relu(y + shortcut), p["att2"], s_att)
    flat = tf.reshape(tf.transpose(x, (0, 3, 1, 2)), (tf.shape(x)[0], -1))
    head = params["head"]
    groups = head["w1"].shape[0]
    g = tf.reshape(flat, (tf.shape(flat)[0], groups, -1))
    h = tf.nn.elu(tf.einsum("bgi,gij->bgj", g, const(head["w1"])) + const(head["b1"]))
    out = (tf.einsum("bgj,gjk->bgk", h, const(head["w2"])) + const(head["b2"]))[..., 0]
    return tf.math.l2_normalize(out, axis=-1, epsilon=1e-12)

  return forward


def build_tflite_encoder(tf_forward: Callable, batch: int,
                         threads: int) -> Callable[[np.ndarray], np.ndarray]:
  """`tf_forward` converted to TensorFlow Lite for one batch size, run by XNNPACK.

  tf.lite's interpreter applies its XNNPACK delegate to float32 graphs by default;
  `threads` is its thread pool.  Returns [batch, 64, 96, 1] -> [batch, d] numpy.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  concrete = tf_forward.get_concrete_function(tf.TensorSpec((batch, 64, 96, 1), tf.float32))
  flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf_forward).convert()
  interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
  interpreter.allocate_tensors()
  source = interpreter.get_input_details()[0]["index"]
  target = interpreter.get_output_details()[0]["index"]

  def forward(x: np.ndarray) -> np.ndarray:
    interpreter.set_tensor(source, np.asarray(x, np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(target)

  return forward
