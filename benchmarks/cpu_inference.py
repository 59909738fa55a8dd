"""CPU fingerprinting throughput: plain XLA vs the fast path vs TensorFlow, side by side.

  python benchmarks/cpu_inference.py                      # small and paper
  python benchmarks/cpu_inference.py --configs=paper --batches=16,32

Three layouts of the CPU are measured, each in its own child process (XLA reads
its flags once): 'threaded' (one XLA device using every core for each op, JAX's
default), 'per_core' (one single-threaded device per core, batches split over
them, XLA's own emitters instead of YNNPACK library fusions: what `nafp` uses,
nafp_jax/inference/cpu_devices.py) and 'per_core_library_fusions' (the same with XLA's
default library fusions, to show that choice side by side).  For each encoder
and layout it measures, in one run on this machine's CPU:
  * the dense matmul FLOP/s (2048x2048 float32; in the per-core layouts every
    device multiplying at once, or one device alone if that is faster) — the roofline;
  * model FLOPs per segment (XLA's cost analysis of the plain forward pass);
  * segments/s of the plain lowering (XLA convolutions, batch 64) and of the
    fast path (CPU conv lowering: im2col on tiny maps and 1x1 kernels, taps for
    few output channels) at several batch sizes, plus bfloat16;
  * segments/s of the same conv stack with the same variables in TensorFlow
    (oneDNN) and in TensorFlow Lite (XNNPACK, a thread per core), after checking
    that each gives the same embeddings;
  * end to end: `Fingerprinter.track_fingerprints` on 60 s of audio (log-mel
    once + windows + encoder), as fingerprints/s and x real time.
Fraction of roofline = FLOPs/segment x segments/s / matmul FLOP/s; the summary
divides by the fastest matmul of all layouts (each child's own rows by its own).
Each figure is the best of `--repeats` timings, so a busy machine disturbs it less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Callable

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["small", "paper"], "Config modules under configs/.")
flags.DEFINE_list("batches", ["8", "16", "32", "64"], "Fast-path batch sizes to time.")
flags.DEFINE_integer("repeats", 3, "Timings per figure; the best is kept.")
flags.DEFINE_float("min_seconds", 1.5, "Minimum duration of one timing.")
LAYOUTS = ("threaded", "per_core", "per_core_library_fusions")
flags.DEFINE_enum("layout", "all", ["all", *LAYOUTS],
                  "CPU layout to measure; 'all' runs one child process per layout.")


def best_rate(fn, items_per_call: int) -> float:
  """Items/s of `fn()` (which blocks), best of FLAGS.repeats timings of >= min_seconds."""
  fn()
  best = 0.0
  for _ in range(FLAGS.repeats):
    calls, t0 = 0, time.perf_counter()
    while True:
      fn()
      calls += 1
      elapsed = time.perf_counter() - t0
      if elapsed >= FLAGS.min_seconds:
        break
    best = max(best, calls * items_per_call / elapsed)
  return best


def matmul_flops() -> tuple[float, float]:
  """(one device, all devices at once): FLOP/s of dense 2048^2 float32 matmuls.

  In the per-core layout one device is one core, so the roofline of the machine is
  every device multiplying its own matrix at the same time.  On the 2-vCPU hosts
  measured so far the two cores share one physical core's vector units: the
  concurrent rate is barely above one device's (RESULTS.md §1).
  """
  from nafp_jax import sharding  # pylint: disable=g-import-not-at-top
  n = 2048
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  one = best_rate(lambda: f(a).block_until_ready(), 1) * 2 * n ** 3
  devices = jax.device_count()
  if devices == 1:
    return one, one
  stacked = jax.device_put(jnp.broadcast_to(a, (devices, n, n)),
                           sharding.batch_sharded(sharding.create_mesh()))
  g = jax.jit(lambda a: jnp.einsum("bij,bjk->bik", a, a))
  return one, best_rate(lambda: g(stacked).block_until_ready(), devices) * 2 * n ** 3


def encoder_rate(model, variables, batch: int) -> float:
  """Segments/s of the jitted encoder, the batch split over all devices."""
  from nafp_jax import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.create_mesh()
  x = np.random.default_rng(1).standard_normal((batch, 64, 96, 1)).astype(np.float32) * 20 - 40
  x = jax.device_put(x, sharding.batch_sharded(mesh))
  variables = jax.device_put(variables, sharding.replicated(mesh))
  f = jax.jit(lambda v, x: model.apply(v, x, train=False))
  return best_rate(lambda: f(variables, x).block_until_ready(), batch)


def tflite_rates(tf_forward: Callable, x_probe: jax.Array, embeddings: np.ndarray,
                 row: Callable[[str, int, float], None]) -> float:
  """Segments/s of the TensorFlow graph as TensorFlow Lite on XNNPACK (a thread per core) at
  each batch size, after checking its embeddings of x_probe; prints a row each, returns the best."""
  from benchmarks.tf_reference import build_tflite_encoder  # pylint: disable=g-import-not-at-top
  threads = len(os.sched_getaffinity(0))
  best_tflite = (0.0, 0)
  for b in map(int, FLAGS.batches):
    tflite_forward = build_tflite_encoder(tf_forward, b, threads)
    probe = np.resize(np.asarray(x_probe), (b, 64, 96, 1))  # x_probe's 4 segments first
    diff = float(np.max(np.abs(tflite_forward(probe)[:len(x_probe)] - embeddings)))
    print(f"   tflite vs jax embeddings (batch {b}): max |diff| {diff:.2e}")
    xb = np.random.default_rng(1).standard_normal((b, 64, 96, 1)).astype(np.float32) * 20 - 40
    r = best_rate(lambda: tflite_forward(xb), b)  # pylint: disable=cell-var-from-loop
    row(f"tflite (XNNPACK, {threads} threads)", b, r)
    best_tflite = max(best_tflite, (r, b))
  return best_tflite[0]


def run_layouts() -> None:
  """Run one child per layout and print the cross-layout ratios."""
  results = {}
  for layout in LAYOUTS:
    argv = [sys.executable, "-m", "benchmarks.cpu_inference", f"--layout={layout}",
            f"--configs={','.join(FLAGS.configs)}", f"--batches={','.join(FLAGS.batches)}",
            f"--repeats={FLAGS.repeats}", f"--min_seconds={FLAGS.min_seconds}"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    for line in proc.stdout.splitlines():
      if line.startswith("RESULT "):
        results[layout] = json.loads(line[len("RESULT "):])
      else:
        print(line)
  peak = max(r["matmul_flops"] for r in results.values())
  print("\n== summary (best of each path; plain = JAX default: threaded, XLA conv, batch 64; "
        f"roofline = fastest matmul of all layouts, {peak / 1e9:.1f} GFLOP/s)")
  for name in FLAGS.configs:
    thr, per = results["threaded"][name], results["per_core"][name]
    lib = results["per_core_library_fusions"][name]
    line = (f"{name}: per-core fast end-to-end {per['end_to_end']:.1f} fingerprints/s "
            f"({0.1 * per['end_to_end']:.1f}x real time, "
            f"{per['flops'] * per['end_to_end'] / peak:.2f} of roofline); "
            f"vs plain encoder {per['end_to_end'] / thr['plain']:.2f}x; "
            f"vs library fusions {per['end_to_end'] / lib['end_to_end']:.2f}x "
            f"({lib['end_to_end']:.1f})")
    if "tensorflow" in thr:
      line += f"; vs tensorflow/oneDNN {per['end_to_end'] / thr['tensorflow']:.2f}x"
    if "tflite" in thr:
      line += f"; vs tflite/XNNPACK {per['end_to_end'] / thr['tflite']:.2f}x"
    print(line)


def main(_):
  if FLAGS.layout == "all":
    run_layouts()
    return
  if FLAGS.layout.startswith("per_core"):
    from nafp_jax.inference.cpu_devices import split_cpu_into_devices  # pylint: disable=g-import-not-at-top
    split_cpu_into_devices(xla_emitters=FLAGS.layout == "per_core")
  import importlib  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from benchmarks.tf_reference import build_tf_encoder  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.encoder_bundle import EncoderBundle  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top
  from nafp_jax.models import conv, create_model  # pylint: disable=g-import-not-at-top

  one_device, all_devices = matmul_flops()
  peak = max(one_device, all_devices)
  summary = {"matmul_flops": peak}
  print(f"\n#### layout {FLAGS.layout}: devices {jax.devices()[0].device_kind} x{jax.device_count()}; "
        f"dense matmul (2048^2 float32): {one_device / 1e9:.1f} GFLOP/s on one device, "
        f"{all_devices / 1e9:.1f} on all {jax.device_count()} at once; roofline {peak / 1e9:.1f}")
  x_probe = jnp.asarray(np.random.default_rng(2).standard_normal((4, 64, 96, 1)) * 20 - 40,
                        jnp.float32)
  for name in FLAGS.configs:
    config = importlib.import_module(f"configs.{name}").get_config()
    plain = create_model(config.model)
    variables = jax.jit(lambda r: plain.init(r, x_probe[:1]))(jax.random.PRNGKey(0))  # pylint: disable=cell-var-from-loop
    lowered = jax.jit(lambda v, x: plain.apply(v, x)).lower(variables, x_probe[:1])  # pylint: disable=cell-var-from-loop
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost["flops"])
    print(f"\n== {name}: {config.model.name}{tuple(config.model.widths)}, "
          f"{flops / 1e9:.3f} GFLOP per segment")
    print(f"{'path':34s} {'batch':>5s} {'seg/s':>8s} {'x real time':>11s} {'of roofline':>11s}")
    row = lambda label, b, r: print(f"{label:34s} {b:5d} {r:8.1f} {0.1 * r:11.1f} "
                                    f"{flops * r / peak:11.2f}")
    rates = {}
    rates["plain"] = encoder_rate(plain, variables, 64)
    row("jax plain (xla conv)", 64, rates["plain"])
    fast = create_model(config.model, lowering=conv.CPU)
    best_fast = (0.0, 0)
    for b in map(int, FLAGS.batches):
      r = encoder_rate(fast, variables, b)
      row("jax fast (CPU conv lowering)", b, r)
      best_fast = max(best_fast, (r, b))
    bf16_config = config.model.copy_and_resolve_references()
    bf16_config.dtype = "bfloat16"
    fast_bf16 = create_model(bf16_config, lowering=conv.CPU)
    r_bf16 = encoder_rate(fast_bf16, variables, best_fast[1])
    row("jax fast, bfloat16", best_fast[1], r_bf16)
    e32 = fast.apply(variables, x_probe)
    e16 = fast_bf16.apply(variables, x_probe)
    print(f"   bfloat16 vs float32 embeddings: min cosine {float(jnp.min(jnp.sum(e32 * e16, -1))):.4f}")
    summary[name] = {"plain": rates["plain"], "fast": best_fast[0], "flops": flops}
    if config.model.name == "attention" and FLAGS.layout == "threaded":
      tf_forward = build_tf_encoder(config.model, variables)
      diff = float(np.max(np.abs(tf_forward(tf.constant(np.asarray(x_probe))).numpy() -
                                 np.asarray(e32))))
      print(f"   tensorflow vs jax embeddings: max |diff| {diff:.2e}")
      best_tf = (0.0, 0)
      for b in map(int, FLAGS.batches):
        xb = tf.constant(np.random.default_rng(1).standard_normal((b, 64, 96, 1)).astype(
            np.float32) * 20 - 40)
        r = best_rate(lambda: tf_forward(xb).numpy(), b)  # pylint: disable=cell-var-from-loop
        row("tensorflow (oneDNN), same stack", b, r)
        best_tf = max(best_tf, (r, b))
      print(f"   fast/tensorflow (best batch each): {best_fast[0] / best_tf[0]:.2f}x")
      summary[name]["tensorflow"] = best_tf[0]
      if hasattr(tf, "lite"):  # tf.lite is deprecated in favour of LiteRT; absent: no row
        best_tflite = tflite_rates(tf_forward, x_probe, np.asarray(e32), row)
        print(f"   fast/tflite (best batch each): {best_fast[0] / best_tflite:.2f}x")
        summary[name]["tflite"] = best_tflite
      else:
        print("   tensorflow lite: not in this TensorFlow, no row")
    print(f"   fast/plain (best batch vs batch 64): {best_fast[0] / rates['plain']:.2f}x")
    fp = Fingerprinter(EncoderBundle(config, variables, name))
    wave = (0.1 * np.random.default_rng(3).standard_normal(16000 * 60)).astype(np.float32)
    n = fp.track_fingerprints(wave).shape[0]
    r = best_rate(lambda: fp.track_fingerprints(wave), n)  # pylint: disable=cell-var-from-loop
    print(f"   end to end, 60 s track (log-mel + windows + encoder, batch {fp.batch_size}): "
          f"{r:.1f} fingerprints/s = {0.1 * r:.1f}x real time")
    summary[name].update(end_to_end=r, end_to_end_roofline=flops * r / peak)
  print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
  app.run(main)
