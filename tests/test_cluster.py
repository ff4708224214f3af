"""The cluster toolkit (``smc_core.cluster``): the job's channel over real sockets on 127.0.0.1, the
failing-rank report, the bounded wait, and the channel the core opens for every job.

Multi-host behaviour (each host a network namespace) is exercised by every launch style's own tests;
here the channel's contract is checked piece by piece, fast."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import pytest

from smc_core import (
    Ack,
    ChannelLink,
    ChannelMaster,
    ClusterError,
    Connection,
    Message,
    Output,
    OutputStream,
    RankFailed,
    RankFailure,
    Supervision,
    create_environment,
    deliver,
    job_channel,
    message_kind,
    open_job_channel,
    root_failure,
    traceback_tail,
    wait_until,
)
from smc_core.cluster.messages import decode, encode
from smc_core.cluster.report import TRACEBACK_CHARS


@message_kind("test.question")
@dataclass(frozen=True)
class Question(Message):
    text: str = ""


@message_kind("test.answer")
@dataclass(frozen=True)
class Answer(Message):
    text: str = ""
    host: str = ""


def local(_: str) -> str:
    return "127.0.0.1"  # every "host" of these tests connects from 127.0.0.1


@pytest.fixture
def master():
    channel = ChannelMaster(
        "algo-1", ["algo-2", "algo-3"], port=0, address="127.0.0.1", resolve=local
    ).start()
    yield channel
    channel.close()


def join(master: ChannelMaster, host: str, **kwargs) -> ChannelLink:
    return ChannelLink.connect("127.0.0.1", master.port, host, timeout=10, **kwargs)


def test_messages_round_trip_with_their_protocol_fields() -> None:
    line = encode(Answer("42", "algo-2"), id=7)
    envelope = decode(line)
    assert envelope is not None and envelope.id == 7 and envelope.reply_to is None
    assert envelope.message == Answer("42", "algo-2")
    failure = RankFailure("algo-2", 1, "Traceback ...\nValueError: x", rank=3, local_rank=1)
    again = decode(encode(RankFailed(failure), reply_to=2))
    assert again is not None and again.reply_to == 2 and again.message == RankFailed(failure)
    unknown = decode(b'{"type": "newer.kind", "x": 1}\n')
    assert unknown is not None and unknown.message.kind == "" and unknown.message.type == "newer.kind"
    assert decode(b"not json\n") is None
    with pytest.raises(ValueError, match="already"):
        message_kind("test.answer")(type("Other", (Message,), {}))


def test_hosts_join_talk_both_ways_and_part_with_the_outcome(master: ChannelMaster) -> None:
    asked: list[tuple[str, str]] = []
    master.on(Question, lambda peer, m: asked.append((peer.host, m.text)) or Answer(m.text.upper(), "algo-1"))
    link2, link3 = join(master, "algo-2"), join(master, "algo-3")
    assert link2.welcome is not None and link2.welcome.master == "algo-1"
    assert sorted(master.joined()) == ["algo-2", "algo-3"]
    # worker -> master: a request answered by the master's handler
    assert link2.request(Question("ping"), timeout=5) == Answer("PING", "algo-1")
    assert asked == [("algo-2", "ping")]
    # master -> every host: a gather, each host's handler answering; a host without one acknowledges
    link2.on(Question, lambda link, m: Answer(m.text, link.host))
    gathered = master.gather(Question("stacks?"), timeout=5)
    assert gathered.replies["algo-2"] == Answer("stacks?", "algo-2")
    assert isinstance(gathered.replies["algo-3"], Ack) and gathered.missing == ()
    # a message no handler takes waits in the link's queue
    master.send("algo-3", Answer("for you"))
    assert link3.receive([Answer], timeout=5) == Answer("for you")
    # the end: the outcome reaches every host, each acknowledges, the master says goodbye
    master.finish(3, "rank 1 failed", timeout=5)
    for link in (link2, link3):
        with link.changed:
            link.changed.wait_for(lambda link=link: link.closed is not None, 5)
        assert link.outcome is not None and (link.outcome.exit_code, link.outcome.failure) == (
            3,
            "rank 1 failed",
        )
        assert link.closed == "bye"


def test_a_goodbye_and_a_lost_peer_are_told_apart(master: ChannelMaster) -> None:
    closed: list[tuple[str, str | None]] = []
    master.on_closed(lambda peer: closed.append((peer.host, peer.closed)))
    leaving, crashing = join(master, "algo-2"), join(master, "algo-3")
    leaving.close("done")
    crashing.connection.close()  # no goodbye: its smc died, or the network broke
    wait_until(lambda: len(closed) == 2, timeout=5, waiting_for="both to close")
    assert sorted(closed) == [("algo-2", "bye"), ("algo-3", "lost")]
    assert master.peers["algo-2"].reason == "done"
    # and from a worker's side: the master's connection dropping without a goodbye is a lost master
    link = join(master, "algo-2")
    lost = threading.Event()
    link.on_closed(lambda _: lost.set())
    master.peers["algo-2"].connection.close()
    assert lost.wait(5) and link.closed == "lost"


def test_a_stranger_is_refused_and_a_missing_master_is_named() -> None:
    master = ChannelMaster("algo-1", ["algo-2"], port=0, address="127.0.0.1", resolve=local).start()
    try:
        with pytest.raises(ClusterError, match="refused algo-9"):
            join(master, "algo-9")
    finally:
        master.close()
    port = master.port  # nothing listens there now
    start = time.monotonic()
    with pytest.raises(ClusterError) as info:
        ChannelLink.connect("127.0.0.1", port, "algo-2", timeout=0.5, setting="SMC_HOST_WAIT_TIMEOUT")
    assert time.monotonic() - start < 5
    assert f"master 127.0.0.1 (port {port}) within 0.5 s" in info.value.message
    assert "SMC_HOST_WAIT_TIMEOUT" in info.value.message and "SMC_CHANNEL_PORT" in info.value.message


def test_a_host_the_master_cannot_resolve_yet_is_let_in_when_it_can() -> None:
    answers = iter([None, None])  # the master's resolver knows algo-2 from the third hello on

    def resolve(_: str) -> str | None:
        return next(answers, "127.0.0.1")

    master = ChannelMaster("algo-1", ["algo-2"], port=0, address="127.0.0.1", resolve=resolve).start()
    try:
        link = join(master, "algo-2")
        assert link.welcome is not None and master.joined() == ["algo-2"]
    finally:
        master.close()


def test_wait_joined_names_who_never_came(master: ChannelMaster) -> None:
    join(master, "algo-2")
    with pytest.raises(ClusterError, match=r"algo-3 did not join the job's channel on algo-1.*SMC_X"):
        master.wait_joined(timeout=0.3, setting="SMC_X")


def test_ranks_report_failures_and_relay_whole_lines(master: ChannelMaster, capfd) -> None:
    stopped = RankFailure("algo-2", 143, "", rank=2, local_rank=0)
    own = RankFailure(
        "algo-3", 1, "Traceback (most recent call last):\nValueError: boom", rank=4, local_rank=0
    )
    assert deliver(f"127.0.0.1:{master.port}", RankFailed(stopped))
    assert deliver(f"127.0.0.1:{master.port}", RankFailed(own))
    assert master.root_failure(wait=1) == own  # the one that failed on its own, not the one stopped
    stream = Connection.open(f"127.0.0.1:{master.port}")
    stream.send(OutputStream(host="algo-2", rank=2, local_rank=0))
    stream.send(Output(fd=2, data="[algo-2 rank 2] Traceback (most recent call last):\n",
                       line="Traceback (most recent call last):", host="algo-2", rank=2))  # fmt: skip
    stream.send(
        Output(fd=1, data="[algo-2 rank 2] a whole line\n", line="a whole line", host="algo-2", rank=2)
    )
    stream.close()
    master.wait_for_streams(1, timeout=5)
    out, err = capfd.readouterr()
    assert "[algo-2 rank 2] a whole line\n" in out and "[algo-2 rank 2] Traceback" in err
    assert not deliver("127.0.0.1:1", RankFailed(own), timeout=1)


def test_the_failing_rank_report_keeps_one_budget() -> None:
    frames = "".join(f'  File "train.py", line {i}, in f{i}\n    f{i + 1}()\n' for i in range(60))
    tail = f"noise before\nTraceback (most recent call last):\n{frames}ValueError: loss is NaN"
    failure = RankFailure("algo-2", 1, tail, rank=1, local_rank=0)
    text = failure.describe("algo-1")
    first, _, rest = text.partition("\n")
    assert first == (
        "rank 1 (local rank 0) on host algo-2 failed with exit code 1; algo-1 stopped its own processes "
        "because of it:"
    )
    assert rest.startswith("Traceback (most recent call last):\n  ...\n") and rest.endswith(
        "ValueError: loss is NaN"
    )
    assert len(rest) <= TRACEBACK_CHARS + 50 and "noise before" not in rest
    # an exception line followed by a long repr is kept, shortened
    long_repr = "Traceback (most recent call last):\nRuntimeError: bad tensor\n" + "x" * 5000
    assert traceback_tail(long_repr).splitlines()[2] == "RuntimeError: bad tensor"
    here = RankFailure("algo-1", None, process="worker").describe("algo-1")
    assert here == "the worker on host algo-1 failed (it was stopped before it could report its exit code)"
    assert RankFailure("algo-1", 139, rank=0).how == "failed with exit code 139 (SIGSEGV)"
    assert root_failure([]) is None


def test_wait_until_is_bounded_and_says_what_it_waits_for(caplog) -> None:
    gave_up = r"Gave up waiting for the moon after 0.3 s\. Set SMC_MOON"
    with caplog.at_level(logging.INFO, logger="smc"), pytest.raises(ClusterError, match=gave_up):
        wait_until(lambda: None, timeout=0.3, waiting_for="the moon", setting="SMC_MOON", first_log=0.1)
    assert "Waiting for the moon (0 s of 0.3 s, SMC_MOON)." in caplog.text
    changed = threading.Condition()
    box: list[int] = []

    def later() -> None:
        time.sleep(0.2)
        with changed:
            box.append(5)
            changed.notify_all()

    threading.Thread(target=later).start()
    start = time.monotonic()
    assert (
        wait_until(lambda: box and box[0], timeout=5, waiting_for="a value", changed=changed, interval=10)
        == 5
    )
    assert time.monotonic() - start < 2  # woken by the condition, not the 10 s interval
    assert wait_until(lambda: None, timeout=0.1, waiting_for="x", raise_on_timeout=False) is None


def test_the_core_opens_the_jobs_channel(tmp_path, job_dir) -> None:
    with pytest.raises(ClusterError, match="No job channel is open"):
        job_channel()
    base = job_dir()
    env = create_environment(base, {**os.environ, "SAGEMAKER_BASE_DIR": str(base)})
    assert env.supervision == Supervision() and env.supervision is env.supervision  # built once
    with open_job_channel(env) as channel:
        assert job_channel() is channel and not channel.multi_host
        master = channel.master()  # one host: opened on demand, on loopback, any free port
        assert master.endpoint.startswith("127.0.0.1:") and channel.master() is master
        with pytest.raises(ClusterError, match="holds the channel's master end"):
            channel.link()
        assert deliver(master.endpoint, RankFailed(RankFailure("algo-1", 2)))
        channel.end(0, None)
    with pytest.raises(ClusterError):
        job_channel()


def test_heartbeats_keep_hosts_alive_and_a_silent_one_is_closed_once() -> None:
    # The master keeps its hosts alive with a 0.6 s bound: algo-2 beats, algo-3 joins without liveness
    # (it never beats: as silent as a host behind a cut network) and is closed as silent, once.
    master = ChannelMaster(
        "algo-1", ["algo-2", "algo-3"], port=0, address="127.0.0.1", resolve=local, liveness=0.6
    ).start()
    closed: list[tuple[str, str | None, str]] = []
    master.on_closed(lambda peer: closed.append((peer.host, peer.closed, peer.reason)))
    try:
        alive = join(master, "algo-2", liveness=0.6)
        join(master, "algo-3")
        start = time.monotonic()
        wait_until(lambda: closed, timeout=5, waiting_for="algo-3 to fall silent")
        took = time.monotonic() - start
        assert [(h, how) for h, how, _ in closed] == [("algo-3", "silent")]
        assert "more than the liveness bound of 0.6 s (SMC_LIVENESS_TIMEOUT)" in (closed[0][2])
        assert 0.5 < took < 3, took
        time.sleep(1.5)  # algo-2 beats on: never taken as silent; algo-3 is not reported again
        assert len(closed) == 1 and alive.closed is None and master.joined() == ["algo-2"]
        assert master.probe(timeout=2) == ["algo-3"]  # algo-2 answers a probe at once
        assert alive.probe(timeout=2)
    finally:
        master.close()


def test_a_link_takes_a_silent_master_as_lost() -> None:
    quiet = ChannelMaster("algo-1", ["algo-2"], port=0, address="127.0.0.1", resolve=local).start()
    try:
        link = join(quiet, "algo-2", liveness=0.6)  # the master sends no heartbeat
        seen = threading.Event()
        link.on_closed(lambda _: seen.set())
        assert seen.wait(5)
        assert link.closed == "silent" and "nothing heard from it for" in link.reason
        assert not link.probe(timeout=0.5)
    finally:
        quiet.close()


def test_a_lost_host_and_a_stop_are_named_for_the_failure_file() -> None:
    from smc_core import LostHost
    from smc_core.base.stopping import JobStopped

    silent = LostHost("algo-2", "silent", "nothing heard from it for 30.1 s, more than ...", "algo-1")
    assert silent.describe("algo-1", "algo-1").startswith(
        "algo-2 was lost: it fell silent (nothing heard from it for 30.1 s"
    )
    died = LostHost("algo-3", "died", "", "algo-1")
    assert died.describe("algo-2", "algo-1").startswith(
        "algo-3 was lost (algo-1 noticed and told every host): its smc died"
    )
    assert (
        LostHost("algo-1", "silent", "x", "algo-2")
        .describe("algo-2", "algo-1")
        .startswith("the master algo-1 was lost: it fell silent")
    )
    text = JobStopped(
        15, "invoke_train", origin="algo-1", after="The training code then exited 0."
    ).failure_text()
    lines = text.split("\n")
    assert lines[0] == (
        "JobStopped: the job was stopped by SIGTERM on algo-1 while the user's code ran (invoke_train); "
        "the user's code had started"
    )
    assert lines[1] == "ExitCode 143" and lines[-1] == "The training code then exited 0."
