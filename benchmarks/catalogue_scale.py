"""Catalogues at scale, built and searched the way `nafp` does: size, build time, latency, hit rate.

  python -m benchmarks.catalogue_scale --real=~/.cache/nafp/eval/dev_CAT,~/.cache/nafp/eval/train_CAT \
      --model=MODEL --audio_catalogue=~/.cache/nafp/eval/dev_CAT --hours=100,1000 \
      --workdir=~/.cache/nafp/scale

For each size a catalogue is written through nafp_jax/catalogue/store.py (streamed rows,
published with the searcher left for later, then the searcher built, in resumable pieces
over 4 M rows, so a build that is killed and run again keeps both; the default storage
unless --storage/--code_bytes say otherwise) from:
  * the real fingerprints of the `--real` catalogues (all their tracks, once), then
  * tracks that stand in for more music, each a real track with every fingerprint
    perturbed by Gaussian noise of std --perturbation/sqrt(d) and renormalised (cosine
    about 0.7 with its source at the default 1.0): the catalogue keeps real music's local
    density and time structure, and every real track gains many close relatives, a
    harder catalogue than one of unrelated music.
Queries are real audio: --queries clips of 5 s cut from the tracks of
--audio_catalogue (which must be among --real), noise at --snr_db dB from the noise
folder, fingerprinted once with --model (kept in --workdir/queries for the next run) and
searched in every catalogue; a hit is the right track within 50 ms.  Exact search (it reads
every row) runs on the first --exact_queries and on every query ScaNN missed: the misses it
recovers are what ScaNN loses
against it, so ScaNN reaches at least hits / (hits + recovered) of exact's hit rate (exact
search may also miss some of ScaNN's hits, as the first --exact_queries show, which only
raises the share).  Reported per size: rows, disk MB per hour of audio, build time, peak
memory of the build, resident memory of the opened catalogue and searcher (measured in a fresh process
that opens it and searches --memory_queries query fingerprints, so that neither the memory the
build freed nor this process's own libraries enter it), p50/p95 latency of one query searched alone, hit rates, and the time to add one
album (--album_minutes of new tracks) with `store.update` (the searcher extended, not trained
again).  Each catalogue is built by a process of its own (this module with --build_only), so
the peak memory reported is the build's, not that of the process that fingerprinted the
queries.  A catalogue already in --workdir at a size is reused (its build figures are the first
run's); the albums added stay in it.
"""

from __future__ import annotations

import json
from pathlib import Path
import resource
import subprocess
import sys
import time

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_list("real", None, "catalogues whose real fingerprints start every catalogue")
flags.DEFINE_string("model", None, "the model of those catalogues (queries are fingerprinted with it)")
flags.DEFINE_string("audio_catalogue", None, "catalogue (one of --real) whose audio the queries "
                    "are cut from; default the first of --real")
flags.DEFINE_list("hours", ["100"], "catalogue sizes, hours of audio")
flags.DEFINE_string("workdir", "~/.cache/nafp/scale", "where the catalogues are written")
flags.DEFINE_string("storage", None, "row format (default: the catalogue default)")
flags.DEFINE_integer("code_bytes", None, "search code bytes (default: the catalogue default)")
flags.DEFINE_float("perturbation", 1.0, "noise std x sqrt(d) of the stand-in tracks")
flags.DEFINE_integer("queries", 200, "5 s queries")
flags.DEFINE_integer("exact_queries", 20, "queries also searched exactly")
flags.DEFINE_float("snr_db", 10.0, "noise level of the queries")
flags.DEFINE_string("noise", "folder:~/.cache/nafp/open_corpus/noise", "noise source spec")
flags.DEFINE_float("album_minutes", 45.0, "length of the album added to each catalogue (0: "
                   "none; adding one writes a new generation, a second copy on disk)")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_integer("memory_queries", 50, "5 s queries the memory-measuring process searches")
flags.DEFINE_bool("build_only", False, "only build the catalogues of --hours that --workdir "
                  "lacks, in this process, and print their build figures (what a full run "
                  "starts as a child process)")

ROWS_PER_HOUR = 36_000
QUERY_S = 5.0


def _unit(x: np.ndarray) -> np.ndarray:
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# Run in a fresh interpreter: open a catalogue, load its searcher, search random query
# fingerprints, and print the growth of the resident set (anonymous and file-backed) as JSON.
_OPEN_AND_SEARCH = """
import json, sys, time
from pathlib import Path
import numpy as np
def status():
  fields = {}
  for line in Path("/proc/self/status").read_text().splitlines():
    key, _, value = line.partition(":")
    if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
      fields[key] = int(value.split()[0]) / 1024
  return fields
from nafp_jax.catalogue import store
from nafp_jax.search.subsequence import subsequence_search
before = status()
start = time.perf_counter()
cat = store.Catalogue(Path(sys.argv[1]))
index = cat.neighbor_index("auto")
load_s = time.perf_counter() - start
opened = status()
rng = np.random.default_rng(0)
for _ in range(int(sys.argv[2])):
  q = rng.standard_normal((10, 41, cat.matrix.shape[1])).astype(np.float32)  # 10 phases
  subsequence_search(q / np.linalg.norm(q, axis=-1, keepdims=True), index, cat.matrix,
                     cat.starts, cat.counts, top=1)
searched = status()
print(json.dumps({"load_s": load_s, "before": before, "opened": opened, "searched": searched}))
"""


def opened_memory(folder: Path, queries: int) -> dict:
  """Resident-memory growth of a fresh process that opens `folder` and searches `queries`
  random 5 s queries: {'load_s', 'before', 'opened', 'searched'} of /proc/self/status (MB)."""
  result = subprocess.run([sys.executable, "-c", _OPEN_AND_SEARCH, str(folder), str(queries)],
                          capture_output=True, text=True, check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def describe_memory(m: dict) -> str:
  grow = {k: m["searched"][k] - m["before"][k] for k in ("VmRSS", "RssAnon", "RssFile")}
  return (f"+{m['opened']['VmRSS'] - m['before']['VmRSS']:.0f} MB resident once opened "
          f"(searcher loaded in {m['load_s']:.1f} s), +{grow['VmRSS']:.0f} MB after "
          f"{FLAGS.memory_queries} searches ({grow['RssAnon']:.0f} anonymous, "
          f"{grow['RssFile']:.0f} mapped rows and files)")


def _real_tracks(catalogues):
  """(fields, fingerprints) of every track of the real catalogues."""
  for cat in catalogues:
    for t in cat.tracks:
      rows = cat.matrix[t.first_row:t.first_row + t.row_count]
      yield {"name": t.name, "path": t.path, "duration": t.duration, "sha1": t.sha1}, rows


def _stand_ins(catalogues, rows_wanted: int, rng, prefix: str):
  """Perturbed copies of real tracks, drawn at random, until `rows_wanted` rows."""
  pool = [(cat, t) for cat in catalogues for t in cat.tracks if t.row_count >= 41]
  made, i = 0, 0
  while made < rows_wanted:
    cat, t = pool[int(rng.integers(len(pool)))]
    rows = cat.matrix[t.first_row:t.first_row + t.row_count][:rows_wanted - made]
    noise = FLAGS.perturbation / np.sqrt(rows.shape[1]) * rng.standard_normal(rows.shape)
    rows = _unit(rows + noise.astype(np.float32))
    yield {"name": f"{prefix}{i:07d}", "path": f"stand-in/{prefix}{i:07d}",
           "duration": rows.shape[0] / 10, "sha1": f"{prefix}{i:0{40 - len(prefix)}d}"}, rows
    made += rows.shape[0]
    i += 1


def catalogue_folder(hours: float, storage) -> Path:
  return Path(FLAGS.workdir).expanduser() / f"{storage.rows}_{storage.code_bytes}_{hours:g}h"


def build_in_child(hours: float, storage) -> dict:
  """Build figures of the catalogue of `hours`, built by a fresh process unless it exists."""
  info = catalogue_folder(hours, storage) / "build.json"
  if not info.exists():
    subprocess.run([sys.executable, "-m", "benchmarks.catalogue_scale", "--build_only",
                    f"--real={','.join(FLAGS.real)}", f"--model={FLAGS.model}",
                    f"--hours={hours:g}", f"--workdir={FLAGS.workdir}",
                    f"--storage={storage.rows}", f"--code_bytes={storage.code_bytes}",
                    f"--perturbation={FLAGS.perturbation}", f"--seed={FLAGS.seed}"], check=True)
  return json.loads(info.read_text())


def build(folder: Path, hours: float, real, storage, rng) -> dict:
  """The catalogue of `hours` in `folder` (reused if there); its build figures, the peak
  resident memory being that of the calling process."""
  from nafp_jax.catalogue import axes_fitting, store, storage as storage_lib  # pylint: disable=g-import-not-at-top
  info = folder / "build.json"
  if store.exists(folder) and info.exists():
    return json.loads(info.read_text())
  real_rows = sum(c.matrix.shape[0] for c in real)
  wanted = int(hours * ROWS_PER_HOUR)
  if wanted < real_rows:
    raise ValueError(f"{hours:g} h is smaller than the real catalogues ({real_rows:,} rows)")
  start = time.perf_counter()
  resumed = store.exists(folder)
  if resumed:  # an interrupted build
    cat = store.Catalogue(folder)
  else:
    row_axes = None
    if storage_lib.needs_row_axes(storage.rows):  # the real catalogue's copy, else its model's
      row_axes = real[0].row_axes or axes_fitting.read_model_row_axes(
          real[0].manifest["model_source"], real[0].manifest["model_identity"])
    cat = store.create(folder, real[0].manifest["model_identity"],
                       real[0].manifest["model_source"], real[0].manifest["dim"], storage,
                       row_axes=row_axes)

  def tracks():
    yield from _real_tracks(real)
    yield from _stand_ins(real, wanted - real_rows, rng, "s")

  # The rows first, published; then the searcher, in pieces. A build killed in the second
  # step keeps its rows and finished pieces, so running it again goes on from there.
  if not cat.searcher_pending:
    cat = store.update(cat, add=tracks(), build_searcher=False)
  cat = store.build_searcher(cat)
  figures = {"rows": int(cat.matrix.shape[0]), "build_s": time.perf_counter() - start,
             "build_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             "resumed": resumed}
  info.write_text(json.dumps(figures))
  return figures


def make_queries(audio_cat, fingerprinter, rng):
  """(query fingerprints, track sha1, start seconds) of --queries noisy 5 s clips."""
  from input_pipeline import sources  # pylint: disable=g-import-not-at-top
  from nafp_jax.evaluation import protocol, query_sets  # pylint: disable=g-import-not-at-top
  waves, hashes = protocol.load_catalogue_tracks(audio_cat)
  noise = sources.load_bank(sources.prepare(FLAGS.noise, "noise"), "train")
  clips = list(query_sets.make_queries(waves, noise, {}, query_sets.Condition(
      "noise", snr_db=FLAGS.snr_db), QUERY_S, FLAGS.queries, FLAGS.seed))
  fingerprints = []
  for lo in range(0, len(clips), 32):
    fingerprints += fingerprinter.query_fingerprints_batch([c.wave for c in clips[lo:lo + 32]])
  return fingerprints, [hashes[c.track] for c in clips], [c.start_s for c in clips]


def cached_queries(audio_cat, model_identity: str, make):
  """`make()`'s queries, kept in --workdir under the model, audio catalogue and query
  settings, so that a run that is stopped and started again does not fingerprint them twice."""
  key = (f"{model_identity[:12]}_{audio_cat.manifest['generation']}_{FLAGS.queries}q_"
         f"{FLAGS.snr_db:g}dB_{FLAGS.seed}_{FLAGS.noise}")
  path = Path(FLAGS.workdir).expanduser() / "queries" / (
      "".join(c if c.isalnum() or c in "._-" else "-" for c in key) + ".npz")
  if path.exists():
    with np.load(path) as saved:
      return list(saved["fingerprints"]), list(saved["sha1"]), list(saved["start_s"])
  fingerprints, sha1, start_s = make()
  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_suffix(".partial.npz")
  np.savez(partial, fingerprints=np.stack(fingerprints), sha1=np.array(sha1),
           start_s=np.array(start_s))
  partial.replace(path)
  return fingerprints, sha1, start_s


def _hit(cat, found, sha1: str, start_s: float) -> bool:
  from nafp_jax.evaluation.protocol import is_segment_hit  # pylint: disable=g-import-not-at-top
  return is_segment_hit(cat, found[0] if found else None, sha1, start_s)


def scann_figures(cat, queries, truth_sha1, truth_start) -> dict:
  """Latency of each query searched alone with the catalogue's searcher, and its hits."""
  from nafp_jax.search.subsequence import subsequence_search  # pylint: disable=g-import-not-at-top
  index = cat.neighbor_index("auto")
  subsequence_search(queries[0], index, cat.matrix, cat.starts, cat.counts, top=1)  # warm-up
  latencies, hits = [], []
  for i, q in enumerate(queries):
    start = time.perf_counter()
    found = subsequence_search(q, index, cat.matrix, cat.starts, cat.counts, top=1)
    latencies.append(1000 * (time.perf_counter() - start))
    hits.append(_hit(cat, found, truth_sha1[i], truth_start[i]))
  return {"p50_ms": float(np.percentile(latencies, 50)),
          "p95_ms": float(np.percentile(latencies, 95)), "hits": hits,
          "hit_rate": float(np.mean(hits)),
          "hit_rate_first": float(np.mean(hits[:FLAGS.exact_queries]))}


def exact_figures(cat, queries, truth_sha1, truth_start, hits) -> dict:
  """Exact search on the first --exact_queries and on every query the searcher missed (one
  pass over the rows): the misses it recovers are all that the searcher loses against it."""
  from nafp_jax.search.subsequence import subsequence_search_batch  # pylint: disable=g-import-not-at-top
  n = FLAGS.exact_queries
  misses = [i for i in range(n, len(queries)) if not hits[i]]
  searched = list(range(min(n, len(queries)))) + misses
  start = time.perf_counter()
  exact = subsequence_search_batch([queries[i] for i in searched], cat.neighbor_index("exact"),
                                   cat.matrix, cat.starts, cat.counts, top=1)
  exact_s = time.perf_counter() - start
  exact_hit = {i: _hit(cat, m, truth_sha1[i], truth_start[i]) for i, m in zip(searched, exact)}
  return {"exact_hit_rate_first": float(np.mean([exact_hit[i] for i in range(n)])),
          "misses": len(queries) - int(np.sum(hits)),
          "misses_exact_finds": int(sum(exact_hit[i] for i in searched if not hits[i])),
          "exact_misses_among_first": int(sum(hits[i] and not exact_hit[i] for i in range(n))),
          "exact_s_per_query": exact_s / max(1, len(searched)), "exact_s": exact_s}


def add_album(cat, real, rng) -> float:
  """Seconds to add --album_minutes of new tracks (12 of them) with one update."""
  from nafp_jax.catalogue import store  # pylint: disable=g-import-not-at-top
  rows = int(FLAGS.album_minutes * 60 * 10)
  album = list(_stand_ins(real, rows, rng, f"album{cat.manifest['generation']}-"))
  start = time.perf_counter()
  store.update(cat, add=album)
  return time.perf_counter() - start


def main(argv):
  del argv
  from nafp_jax.catalogue import store  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.axes_fitting import model_default_storage  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.storage import Storage  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(FLAGS.seed)
  real = [store.Catalogue(Path(p).expanduser()) for p in FLAGS.real]
  default = model_default_storage(Path(FLAGS.model).expanduser())
  storage = Storage(FLAGS.storage or default.rows, FLAGS.code_bytes or default.code_bytes)
  if FLAGS.build_only:
    for hours in map(float, FLAGS.hours):
      figures = build(catalogue_folder(hours, storage), hours, real, storage, rng)
      print(f"{hours:g} h: {json.dumps(figures)}", flush=True)
    return
  from nafp_jax.inference.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top
  audio_cat = store.Catalogue(Path(FLAGS.audio_catalogue or FLAGS.real[0]).expanduser())
  encoder = load_encoder(FLAGS.model)
  audio_cat.check_model(encoder.identity)
  start = time.perf_counter()
  queries, truth_sha1, truth_start = cached_queries(
      audio_cat, encoder.identity, lambda: make_queries(audio_cat, Fingerprinter(encoder), rng))
  print(f"{len(queries)} queries of {QUERY_S:g} s, noise at {FLAGS.snr_db:g} dB, fingerprinted "
        f"or read in {time.perf_counter() - start:.0f} s; storage: {storage.describe()}")
  for hours in map(float, FLAGS.hours):
    folder = catalogue_folder(hours, storage)
    built = build_in_child(hours, storage)
    resident = describe_memory(opened_memory(folder, FLAGS.memory_queries))
    cat = store.Catalogue(folder)
    cat.neighbor_index("auto")
    found = scann_figures(cat, queries, truth_sha1, truth_start)
    mb_per_hour = cat.disk_bytes / 1e6 / cat.hours
    # Printed before exact search, which reads every row and takes longest at large sizes.
    print(f"{hours:g} h: {built['rows']:,} rows, {mb_per_hour:.2f} MB per hour on disk, built in "
          f"{built['build_s']:.0f} s (peak RSS of the build {built['build_peak_rss_mb']:.0f} MB); opened: "
          f"{resident}; one 5 s query: p50 {found['p50_ms']:.1f} ms, p95 "
          f"{found['p95_ms']:.1f} ms; hit rate {100 * found['hit_rate']:.1f} % "
          f"({len(queries)}), first {FLAGS.exact_queries}: {100 * found['hit_rate_first']:.1f} %",
          flush=True)
    exact = exact_figures(cat, queries, truth_sha1, truth_start, found["hits"])
    scann_hits = int(np.sum(found["hits"]))
    hit_share = scann_hits / max(1, scann_hits + exact["misses_exact_finds"])
    album = (f"one {FLAGS.album_minutes:g}-min album added in {add_album(cat, real, rng):.1f} s"
             if FLAGS.album_minutes > 0 else "no album added")
    print(f"{hours:g} h: first {FLAGS.exact_queries}: {100 * found['hit_rate_first']:.1f} % vs "
          f"exact {100 * exact['exact_hit_rate_first']:.1f} %; exact search finds "
          f"{exact['misses_exact_finds']} of ScaNN's {exact['misses']} misses (and misses "
          f"{exact['exact_misses_among_first']} of ScaNN's hits among the first), so ScaNN "
          f"reaches at least {100 * hit_share:.1f} % of exact's hit rate (exact "
          f"{exact['exact_s_per_query']:.1f} s a query, {exact['exact_s']:.0f} s in all); {album}",
          flush=True)

if __name__ == "__main__":
  flags.mark_flag_as_required("real")
  flags.mark_flag_as_required("model")
  app.run(main)
