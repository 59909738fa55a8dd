"""The `nafp` commands that run for a long time: `monitor` (a stream) and `serve` (a service).

Kept apart from nafp_jax/cli.py, which registers them through `add_stream_parsers`.
"""

from __future__ import annotations

import json
import sys
from typing import Callable



MONITOR_HELP = """Find which catalogue tracks play in long recordings or a live stream.

  nafp monitor show.mp3 --db CAT [--json] [--csv out.csv] [--plot out.png]
  arecord -f S16_LE -r 16000 -c 1 | nafp monitor - --db CAT --json
  ffmpeg -i URL -f s16le -ac 2 -ar 44100 - | nafp monitor - --rate 44100 --channels 2 --db CAT

Overlapping windows (--window-s every --hop-s) are searched; windows that agree on a
track and a consistent position in it are merged into one detection: stream start and
end, track, the part of the track, score. A detection survives a short dropout, splits
at a cut to another track or a jump within the same track; stretches of audio not in
the catalogue are reported as no-match gaps, using the catalogue's threshold. Audio is
read in blocks, so recordings of any length take bounded memory. With standard input a
"now playing" event is also written when each detection is first confirmed."""


SERVE_HELP = """Serve queries over HTTP until SIGTERM or Ctrl-C.

  curl --data-binary @clip.wav 'http://127.0.0.1:8080/identify?top=5'   # as query --json
  curl http://127.0.0.1:8080/tracks     curl http://127.0.0.1:8080/info
  curl http://127.0.0.1:8080/healthz    curl http://127.0.0.1:8080/readyz
  curl http://127.0.0.1:8080/metrics    (Prometheus text)

The upload is the audio file itself as the request body (any format query reads).
When `nafp index`, `remove` or `calibrate` publishes a new catalogue generation the
service switches to it between requests, after loading it completely; one built by
another model is refused (see /info) and the old one kept. Errors are JSON with a 4xx
status; a full queue gets 503 with Retry-After."""


def cmd_serve(args) -> int:
  from nafp_jax.service.app import ServiceLimits  # pylint: disable=g-import-not-at-top
  from nafp_jax.service.engine import QueryEngine  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.opening import load_catalogue_and_model  # pylint: disable=g-import-not-at-top
  from nafp_jax.service.server import serve  # pylint: disable=g-import-not-at-top
  _, fingerprinter = load_catalogue_and_model(None, args.model)
  engine = QueryEngine(args.db, fingerprinter, phases=args.phases, backend=args.backend)
  engine.identify([_warm_up_clip()], ["warm-up"], [1])  # compile the encoder before serving
  limits = ServiceLimits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                         max_clip_s=args.max_clip_s, request_timeout_s=args.timeout_s,
                         max_batch=args.max_batch, max_queue=args.max_queue,
                         reload_interval_s=args.reload_s)
  cat = engine.catalogue
  print(f"serving {cat.root} ({len(cat.tracks)} tracks, generation {engine.generation}) on "
        f"http://{args.host}:{args.port}  (SIGTERM or Ctrl-C stops it)", flush=True)
  serve(engine, args.host, args.port, limits, args.graceful_s)
  return 0


def cmd_monitor(args) -> int:
  import time  # pylint: disable=g-import-not-at-top
  from nafp_jax.audio import audio_io  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.opening import load_catalogue_and_model  # pylint: disable=g-import-not-at-top
  from nafp_jax.monitoring import audio_stream, timeline  # pylint: disable=g-import-not-at-top
  from nafp_jax.monitoring.monitor import MonitorSettings, monitor_stream  # pylint: disable=g-import-not-at-top
  settings = MonitorSettings(window_s=args.window_s, hop_s=args.hop_s, confirm_s=args.confirm_s,
                             max_gap_s=args.max_gap_s, frame_step=args.frame_step)
  cat, fingerprinter = load_catalogue_and_model(args.db, args.model)
  if cat.threshold is None:
    print(f"warning: {cat.root} has no no-match threshold: every window's best track counts; "
          f"`nafp calibrate --db {cat.root}` sets one", file=sys.stderr)
  records, failed = [], 0
  for recording in args.recordings:
    live = recording == "-"
    blocks = (audio_stream.pcm_blocks(sys.stdin.buffer, args.rate, args.channels) if live
              else audio_stream.file_blocks(recording))
    start, seconds = time.perf_counter(), 0.0

    def counted(stream):
      nonlocal seconds
      for block in stream:
        seconds += block.shape[0] / audio_io.SAMPLE_RATE
        yield block

    try:
      for event in monitor_stream(cat, fingerprinter, counted(blocks), settings, args.backend):
        record = timeline.event_record(cat, "stdin" if live else str(recording), event)
        if record["event"] == "started" and not live:
          continue  # a file's timeline lists each detection once, when it is final
        records.append(record)
        print(json.dumps(record, allow_nan=False) if args.json else timeline.human_line(record),
              flush=True)
    except audio_io.AudioDecodeError as e:
      print(f"error: {e}", file=sys.stderr)
      failed += 1
      continue
    wall = time.perf_counter() - start
    print(f"{'stdin' if live else recording}: {seconds:.1f} s of audio monitored in {wall:.1f} s "
          f"({seconds / max(wall, 1e-9):.1f}x real time)", file=sys.stderr)
  if args.csv:
    timeline.write_csv(records, args.csv)
  if args.plot:
    timeline.plot(records, args.plot)
  return 1 if failed else 0


def _warm_up_clip():
  """A 3 s warm-up clip of faint noise (16 kHz)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return (1e-2 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32)


def add_stream_parsers(add: Callable) -> None:
  """Register `serve` and `monitor` with the CLI's `add(name, func, help, description)`."""
  p = add("serve", cmd_serve, "Serve queries over HTTP: the model and catalogue stay loaded, "
          "clips that arrive together are answered in one batch.", SERVE_HELP)
  p.add_argument("--model", help="the catalogue's model (default: the shipped model)")
  p.add_argument("--host", default="127.0.0.1", help="address to listen on")
  p.add_argument("--port", type=int, default=8080)
  p.add_argument("--max-batch", type=int, default=32, help="clips answered per batch at most")
  p.add_argument("--max-queue", type=int, default=256,
                 help="requests waiting at most; more are refused with 503 and Retry-After")
  p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload")
  p.add_argument("--max-clip-s", type=float, default=60.0, help="longest clip, seconds")
  p.add_argument("--timeout-s", type=float, default=30.0,
                 help="a request not answered within this gets 504")
  p.add_argument("--graceful-s", type=float, default=30.0,
                 help="on SIGTERM, how long requests in flight may take to finish")
  p.add_argument("--reload-s", type=float, default=1.0,
                 help="how often to look for a new catalogue generation")
  p.add_argument("--phases", type=int, default=10, help="10 ms sub-hop phases to try")
  p.add_argument("--backend", choices=["auto", "exact", "scann"], default="auto",
                 help="neighbour search (see query)")

  p = add("monitor", cmd_monitor, "Which catalogue tracks play in long recordings or a live "
          "stream, from when to when.", MONITOR_HELP)
  p.add_argument("recordings", nargs="+", help="audio files of any length, or - for raw 16-bit "
                 "little-endian PCM on standard input")
  p.add_argument("--model", help="the catalogue's model (default: the shipped model)")
  p.add_argument("--json", action="store_true", help="JSON Lines, one event per line, "
                 "written as each becomes final")
  p.add_argument("--csv", help="also write the detections and gaps to this CSV file")
  p.add_argument("--plot", help="also draw the timeline into this PNG file")
  p.add_argument("--rate", type=int, default=16000, help="sample rate of standard input")
  p.add_argument("--channels", type=int, default=1, help="channels of standard input")
  p.add_argument("--window-s", type=float, default=5.0, help="length of each searched window")
  p.add_argument("--hop-s", type=float, default=1.0, help="a window every this many seconds")
  p.add_argument("--frame-step", type=int, default=2,
                 help="fingerprints start every this many 10 ms frames: 2 finds offsets to "
                 "20 ms; 10 (one phase) is about 5x less fingerprinting")
  p.add_argument("--confirm-s", type=float, default=2.0,
                 help="agreeing windows this far apart confirm a detection")
  p.add_argument("--max-gap-s", type=float, default=8.0,
                 help="a detection survives this long without support (dropouts, talk-over)")
  p.add_argument("--backend", choices=["auto", "exact", "scann"], default="auto",
                 help="neighbour search (see query)")

