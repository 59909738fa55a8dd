"""Load benchmark of `nafp serve`: latency and throughput at 1, 8 and 32 concurrent clients.

  python -m benchmarks.serve_load --db=~/.cache/nafp/eval/dev_fix_dev05_1000 \
      --update_audio=SOME_TRACK.ogg

Copies the catalogue to a temporary folder, starts `nafp serve` on it (127.0.0.1, a
free port, the shipped model unless --model), and sends 3 s clips cut from the
catalogue's own tracks (16 kHz WAV uploads) from N client threads, each with its own
keep-alive connection, one request after another, for --seconds per level (bounded
by --max_requests).  Printed per level: requests, throughput, p50/p95/p99 latency,
errors by status, and the share answered with the right track; then the server's
resident memory before and after, and the same 8-client run with `nafp index` of
--update_audio into the served catalogue in the middle (the service must switch to
the new generation without an error).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import json
import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_string("db", None, "Catalogue to serve (copied; the original is not touched).")
flags.DEFINE_string("model", None, "Model folder (default: the shipped model).")
flags.DEFINE_list("clients", ["1", "8", "32"], "Concurrency levels.")
flags.DEFINE_float("seconds", 30.0, "Duration of each level.")
flags.DEFINE_integer("max_requests", 2000, "Requests per level at most.")
flags.DEFINE_float("clip_s", 3.0, "Clip length.")
flags.DEFINE_string("update_audio", None, "Audio file indexed during the update run.")
flags.DEFINE_integer("phases", 10, "Sub-hop phases the server fingerprints each clip at "
                     "(`nafp serve --phases`): fewer is faster, timestamps coarser.")
flags.mark_flag_as_required("db")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_ready(port: int, timeout_s: float = 120.0) -> None:
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    try:
      conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
      conn.request("GET", "/readyz")
      if conn.getresponse().status == 200:
        return
    except OSError:
      pass
    time.sleep(0.2)
  raise SystemExit(f"the server on port {port} did not become ready in {timeout_s:.0f} s")


def _rss_mb(pid: int) -> float:
  for line in Path(f"/proc/{pid}/status").read_text().splitlines():
    if line.startswith("VmRSS:"):
      return int(line.split()[1]) / 1024
  return float("nan")


def _clips(db: Path, n: int, clip_s: float) -> list[tuple[bytes, str]]:
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  from nafp_jax.audio import audio_io  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  cat = catalogue_lib.Catalogue(db)
  rng = np.random.default_rng(0)
  out = []
  for t in rng.choice(len(cat.tracks), n, replace=len(cat.tracks) < n):
    wave = audio_io.load_audio(cat.tracks[t].path)
    length = int(clip_s * audio_io.SAMPLE_RATE)
    start = int(rng.integers(0, max(1, wave.shape[0] - length)))
    buf = io.BytesIO()
    sf.write(buf, wave[start:start + length], audio_io.SAMPLE_RATE, format="WAV")
    out.append((buf.getvalue(), cat.tracks[t].name))
  return out


def _client(port: int, clips, stop_at: float, budget: list) -> list[tuple[float, int, bool]]:
  """Requests one after another until `stop_at` or the shared budget is spent."""
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
  rng = np.random.default_rng(len(budget))
  done = []
  while time.time() < stop_at:
    try:
      budget.pop()
    except IndexError:
      break
    body, truth = clips[int(rng.integers(len(clips)))]
    start = time.perf_counter()
    try:
      conn.request("POST", "/identify", body, {"Content-Type": "audio/wav"})
      response = conn.getresponse()
      answer = json.loads(response.read())
      status = response.status
    except (OSError, http.client.HTTPException, ValueError):
      conn.close()
      conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
      status, answer = -1, {}
    right = status == 200 and bool(answer["results"]) and answer["results"][0]["track"] == truth
    done.append((time.perf_counter() - start, status, right))
  conn.close()
  return done


def _level(port: int, clips, clients: int, seconds: float, max_requests: int) -> dict:
  budget = list(range(max_requests))
  stop_at = time.time() + seconds
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    runs = list(pool.map(lambda _: _client(port, clips, stop_at, budget), range(clients)))
  wall = time.perf_counter() - start
  done = [r for run in runs for r in run]
  latency = np.array([d[0] for d in done if d[1] == 200] or [np.nan]) * 1000
  statuses = [d[1] for d in done]
  return {"clients": clients, "requests": len(done), "throughput": len(latency) / wall,
          "p50": np.percentile(latency, 50), "p95": np.percentile(latency, 95),
          "p99": np.percentile(latency, 99),
          "errors": {s: statuses.count(s) for s in sorted(set(statuses)) if s != 200},
          "right": np.mean([d[2] for d in done if d[1] == 200])}


def _print(row: dict, label: str = "") -> None:
  print(f"| {row['clients']}{label} | {row['requests']} | {row['throughput']:.1f} | "
        f"{row['p50']:.0f} | {row['p95']:.0f} | {row['p99']:.0f} | {row['errors'] or 0} | "
        f"{row['right']:.1%} |", flush=True)


def main(_):
  db = Path(FLAGS.db).expanduser()
  with tempfile.TemporaryDirectory(prefix="nafp-serve-load-") as tmp:
    served = Path(tmp) / "cat"
    shutil.copytree(db, served)
    clips = _clips(served, 64, FLAGS.clip_s)
    port = _free_port()
    command = [sys.executable, "-m", "nafp_jax.cli", "serve", "--db", str(served),
               "--port", str(port), "--reload-s", "0.5", "--phases", str(FLAGS.phases)]
    if FLAGS.model:
      command += ["--model", FLAGS.model]
    started = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
      server.stdout.readline()
      _wait_ready(port)
      print(f"server up in {time.perf_counter() - started:.1f} s; cores: {os.cpu_count()}; "
            f"{FLAGS.clip_s:g} s clips; {FLAGS.phases} phases")
      rss_before = _rss_mb(server.pid)
      _level(port, clips, 1, 3.0, 10)  # warm-up
      print("| clients | requests | answers/s | p50 ms | p95 ms | p99 ms | errors | right track |")
      print("|---|---|---|---|---|---|---|---|")
      rows = []
      for clients in map(int, FLAGS.clients):
        rows.append(_level(port, clips, clients, FLAGS.seconds, FLAGS.max_requests))
        _print(rows[-1])
      if FLAGS.update_audio:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/info")
        generation = json.loads(conn.getresponse().read())["generation"]
        indexer = subprocess.Popen(
            [sys.executable, "-m", "nafp_jax.cli", "index", FLAGS.update_audio, "--db",
             str(served), "--quiet"] + (["--model", FLAGS.model] if FLAGS.model else []),
            stdout=subprocess.DEVNULL)
        row = _level(port, clips, 8, FLAGS.seconds, FLAGS.max_requests)
        indexer.wait()
        _print(row, " (index update during the run)")
        deadline = time.time() + 120  # the new generation loads in the background
        while True:
          conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
          conn.request("GET", "/info")
          info = json.loads(conn.getresponse().read())
          if info["generation"] != generation or time.time() > deadline:
            break
          time.sleep(0.5)
        print(f"after the update: generation {generation} -> {info['generation']}, "
              f"{info['tracks']} tracks, "
              f"switch refused: {info['switch_refused']}")
      print(f"server memory (RSS): {rss_before:.0f} MB before, {_rss_mb(server.pid):.0f} MB after")
      if rows and rows[0]["clients"] == 1:
        for row in rows[1:]:
          print(f"throughput at {row['clients']} clients: "
                f"{row['throughput'] / rows[0]['throughput']:.2f}x one client")
    finally:
      server.send_signal(signal.SIGTERM)
      server.wait(60)


if __name__ == "__main__":
  app.run(main)
