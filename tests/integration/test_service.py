"""`nafp serve`, end to end over HTTP on 127.0.0.1: answers, bad requests, overload,
catalogue switching and graceful shutdown."""

import concurrent.futures
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax import cli
from nafp_jax.inference.encoder_bundle import load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.service.app import ServiceLimits, create_app
from nafp_jax.service.engine import QueryEngine


class Server:
  """The app under uvicorn on a free 127.0.0.1 port, in a thread."""

  def __init__(self, engine, limits):
    import uvicorn  # pylint: disable=g-import-not-at-top
    config = uvicorn.Config(create_app(engine, limits), host="127.0.0.1", port=0,
                            log_level="warning")
    self.server = uvicorn.Server(config)
    self.thread = threading.Thread(target=self.server.run, daemon=True)

  def __enter__(self):
    self.thread.start()
    deadline = time.time() + 60
    while not self.server.started and time.time() < deadline:
      time.sleep(0.01)
    port = self.server.servers[0].sockets[0].getsockname()[1]
    self.url = f"http://127.0.0.1:{port}"
    return self

  def __exit__(self, *exc):
    self.server.should_exit = True
    self.thread.join(30)


def request(url, body=None, method=None):
  """(status, headers, parsed JSON or text) without raising on 4xx/5xx."""
  req = urllib.request.Request(url, data=body, method=method)
  try:
    with urllib.request.urlopen(req, timeout=60) as r:
      status, headers, data = r.status, dict(r.headers), r.read()
  except urllib.error.HTTPError as e:
    status, headers, data = e.code, dict(e.headers), e.read()
  try:
    return status, headers, json.loads(data)
  except ValueError:
    return status, headers, data.decode()


def wav_bytes(wave, sr=16000):
  buf = io.BytesIO()
  sf.write(buf, wave, sr, format="WAV")
  return buf.getvalue()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, model_dir, music):  # pylint: disable=redefined-outer-name
  db = tmp_path_factory.mktemp("serve") / "cat"
  assert cli.main(["index", str(music / "song0.wav"), str(music / "song1.wav"), "--db", str(db),
                   "--model", str(model_dir), "--quiet"]) == 0
  return db


@pytest.fixture(scope="module")
def fingerprinter(model_dir):  # pylint: disable=redefined-outer-name
  return Fingerprinter(load_encoder(model_dir))


def clip_of(music, song, start_s, length_s):  # pylint: disable=redefined-outer-name
  wave = sf.read(music / f"{song}.wav", dtype="float32")[0]
  return wave[int(start_s * 16000):int((start_s + length_s) * 16000)]


def test_identify_and_the_read_endpoints(catalogue, fingerprinter, music):  # pylint: disable=redefined-outer-name
  with Server(QueryEngine(catalogue, fingerprinter), ServiceLimits()) as s:
    status, _, answer = request(s.url + "/identify?top=2&name=c.wav",
                                wav_bytes(clip_of(music, "song1", 2.0, 3.0)))
    assert status == 200 and answer["query"] == "c.wav"
    assert answer["results"][0]["track"] == "song1.wav" and len(answer["results"]) <= 2
    assert abs(answer["results"][0]["timestamp_s"] - 2.0) <= 0.05
    assert {"fingerprint", "search", "total"} <= set(answer["timings_s"])
    status, _, tracks = request(s.url + "/tracks")
    assert status == 200 and [t["name"] for t in tracks["tracks"]] == ["song0.wav", "song1.wav"]
    status, _, info = request(s.url + "/info")
    assert status == 200 and info["tracks"] == 2 and info["switch_refused"] is None
    assert request(s.url + "/healthz")[0] == 200 and request(s.url + "/readyz")[0] == 200
    status, _, text = request(s.url + "/metrics")
    assert status == 200 and 'nafp_requests_total{endpoint="identify",status="200"} 1.0' in text
    assert "nafp_queue_depth" in text and "nafp_request_latency_seconds_bucket" in text


def test_bad_requests_get_a_4xx_with_a_message_and_harm_no_other(
    catalogue, fingerprinter, music, tmp_path):  # pylint: disable=redefined-outer-name
  limits = ServiceLimits(max_upload_bytes=400_000, max_clip_s=10.0)
  good = wav_bytes(clip_of(music, "song0", 1.0, 3.0))
  with Server(QueryEngine(catalogue, fingerprinter), limits) as s:
    cases = [
        (s.url + "/identify", b"", 422, "empty upload"),
        (s.url + "/identify", b"this is not audio" * 10, 415, "cannot decode"),
        (s.url + "/identify", wav_bytes(np.zeros(4000, np.float32) + 0.1), 422,
         "shorter than one fingerprint"),
        (s.url + "/identify", wav_bytes(np.zeros(8000 * 13, np.float32), 8000), 413,
         "over the limit of 10 s"),
        (s.url + "/identify", b"\0" * 500_000, 413, "over the limit of 400000 bytes"),
        (s.url + "/identify?top=abc", good, 400, "top must be an integer"),
        (s.url + "/identify?top=0", good, 400, "between 1 and"),
        (s.url + "/identify?colour=red", good, 400, "unknown parameter"),
        (s.url + "/nowhere", None, 404, "Not Found"),
    ]
    for url, body, code, message in cases:
      status, _, answer = request(url, body, method="POST" if body is not None else "GET")
      assert status == code and message in answer["error"], (url, status, answer)
    status, _, answer = request(s.url + "/identify", good)
    assert status == 200 and answer["results"][0]["track"] == "song0.wav"
    status, _, text = request(s.url + "/metrics")
    assert 'status="500"' not in text


def test_overload_is_refused_with_503_and_retry_after(catalogue, fingerprinter, music):  # pylint: disable=redefined-outer-name
  body = wav_bytes(clip_of(music, "song1", 0.0, 5.0))
  with Server(QueryEngine(catalogue, fingerprinter), ServiceLimits(max_batch=1, max_queue=1)) as s:
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
      answers = list(pool.map(lambda _: request(s.url + "/identify", body), range(24)))
  statuses = [a[0] for a in answers]
  assert set(statuses) == {200, 503} and statuses.count(200) >= 2
  refused = next(a for a in answers if a[0] == 503)
  assert refused[1]["retry-after"] == "1" and "busy" in refused[2]["error"]
  assert all(a[2]["results"][0]["track"] == "song1.wav" for a in answers if a[0] == 200)


def test_new_generations_are_served_and_another_models_are_refused(
    tmp_path, model_dir, music, fingerprinter):  # pylint: disable=redefined-outer-name
  db = tmp_path / "cat"
  cli.main(["index", str(music / "song0.wav"), "--db", str(db), "--model", str(model_dir),
            "--quiet"])
  engine = QueryEngine(db, fingerprinter)
  with Server(engine, ServiceLimits(reload_interval_s=0.05)) as s:
    first = request(s.url + "/info")[2]["generation"]
    cli.main(["index", str(music / "song2.wav"), "--db", str(db), "--model", str(model_dir),
              "--quiet"])
    clip = wav_bytes(clip_of(music, "song2", 1.0, 3.0))
    deadline = time.time() + 30
    while request(s.url + "/info")[2]["generation"] == first and time.time() < deadline:
      request(s.url + "/identify", clip)  # the switch happens between batches
      time.sleep(0.05)
    status, _, answer = request(s.url + "/identify", clip)
    assert status == 200 and answer["results"][0]["track"] == "song2.wav"
    second = request(s.url + "/info")[2]["generation"]
    assert second != first
    # A generation made with another model is refused; the served one stays.
    catalogue_lib.update(catalogue_lib.Catalogue(db), manifest_changes={"model_identity": "f" * 40})
    deadline = time.time() + 30
    while request(s.url + "/info")[2]["switch_refused"] is None and time.time() < deadline:
      time.sleep(0.05)
    info = request(s.url + "/info")[2]
    assert "built with model ffffffffffff" in info["switch_refused"]
    assert info["generation"] == second
    assert request(s.url + "/identify", clip)[0] == 200


def test_sigterm_lets_the_request_in_flight_finish(tmp_path, catalogue, model_dir, music):  # pylint: disable=redefined-outer-name
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
  proc = subprocess.Popen([sys.executable, "-m", "nafp_jax.cli", "serve", "--db", str(catalogue),
                           "--model", str(model_dir), "--port", str(port), "--graceful-s", "20"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ))
  try:
    assert "serving" in proc.stdout.readline()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
      try:
        if request(url + "/readyz")[0] == 200:
          break
      except OSError:
        time.sleep(0.1)
    body = wav_bytes(clip_of(music, "song1", 1.0, 3.0))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("POST", "/identify")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:1000])  # the request is in flight: headers and part of the body
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    conn.send(body[1000:])
    response = conn.getresponse()
    answer = json.loads(response.read())
    assert response.status == 200 and answer["results"][0]["track"] == "song1.wav"
    # After the graceful stop uvicorn re-raises the signal: the status says "ended by SIGTERM".
    assert proc.wait(60) == -signal.SIGTERM
  finally:
    if proc.poll() is None:
      proc.kill()
