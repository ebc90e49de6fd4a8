"""Specification of the wire format: encode and decode are exact inverses."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
import zmq

from fiber_jupyter import protocol


MESSAGES = [
    protocol.Hello("w3", 1234, "host", protocol.PROTOCOL_VERSION),
    protocol.Welcome(b"\x80initializer", ("import math", "x = 1")),
    protocol.Welcome(None, ()),
    protocol.Execute(3, "import numpy as np\nprint(np.__version__)"),
    protocol.Executed(3, "1.26\n", None),
    protocol.Executed(4, "", "Traceback ...\nNameError: name 'y' is not defined"),
    protocol.Ready(None, None),
    protocol.Ready("Traceback ...", None),
    protocol.Ready("Traceback ...", 2),
    protocol.Run(7, 2, 1, 10, True, (1, 5)),
    protocol.Done(7, 10, 2, 0.25),
    protocol.Heartbeat(1.25, 48 << 20),
    protocol.Cancel((7, 8)),
    protocol.Stop(),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_with_its_body(message):
    frames = protocol.encode(message, [b"body", b"buffer"])
    assert frames[0] == message.KIND
    decoded, body = protocol.decode(frames)
    assert decoded == message and type(decoded) is type(message)
    assert body == [b"body", b"buffer"]


def test_zmq_frames_decode_and_body_frames_stay_frames():
    frames = [zmq.Frame(f) for f in protocol.encode(protocol.Done(1, 1, 0, 0.1), [b"x"])]
    decoded, body = protocol.decode(frames)
    assert decoded == protocol.Done(1, 1, 0, 0.1)
    assert isinstance(body[0], zmq.Frame)


@pytest.mark.parametrize("frames, error", [
    ([b"D"], "expected at least 2 frames, got 1"),
    ([b"?", b""], "unknown message kind b'?'"),
    ([b"D", b"not a pickle"], "malformed Done header"),
    ([b"D", protocol.encode(protocol.Stop())[1]], "malformed Done header"),
])
def test_bad_frames_raise_protocol_error_naming_the_problem(frames, error):
    with pytest.raises(protocol.ProtocolError, match=error.replace("(", r"\(").replace("?", r"\?")):
        protocol.decode(frames)


def test_each_message_type_has_a_kind_byte_of_its_own():
    kinds = [cls for cls in vars(protocol).values()
             if isinstance(getattr(cls, "KIND", None), bytes)]
    assert len(kinds) == 10
    assert set(protocol.MESSAGE_TYPES.values()) == set(kinds)


@given(st.lists(st.binary(max_size=64), max_size=6))
def test_decoding_arbitrary_frames_yields_a_message_or_a_protocol_error(frames):
    try:
        message, body = protocol.decode(frames)
    except protocol.ProtocolError:
        return
    assert type(message) in protocol.MESSAGE_TYPES.values()
    assert body == frames[2:]


@given(st.integers(min_value=0), st.integers(min_value=0), st.sampled_from([0, 1, 2]),
       st.integers(min_value=0, max_value=10**6), st.booleans(),
       st.lists(st.integers(min_value=0), max_size=5).map(tuple))
def test_run_messages_round_trip_for_any_field_values(batch_id, job_id, mode, count,
                                                      included, forget):
    run = protocol.Run(batch_id, job_id, mode, count, included, forget)
    assert protocol.decode(protocol.encode(run))[0] == run
