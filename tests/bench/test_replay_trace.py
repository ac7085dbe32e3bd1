"""The Mooncake trace reader (bench/replay/trace.py): what it accepts is what guidellm's ``kind=mooncake`` accepts,
a bad line stops the replay with its line number and field, windows and limits keep the right requests in time order,
and prompts built from hash ids share exactly the blocks their ids share."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.fake_engine.kv_cache import block_hashes
from bench.replay.prompts import ID_WORDS, Prompts, block_tokens
from bench.replay.trace import TraceColumns, TraceFormatError, TraceRequest, Window, index_trace, parse_line
from bench.replay.workload import PrefixBound, peak_rate
from bench.workloads.vocabulary import word


def line(**fields: object) -> str:
    record: dict[str, object] = {"timestamp": 0, "input_length": 1000, "output_length": 8, "hash_ids": [1, 2]}
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not None})


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_line_of_the_published_format_parses() -> None:
    request = parse_line(line(timestamp=277, input_length=32140, output_length=92, hash_ids=list(range(63))), 4)
    assert request == TraceRequest(4, 277.0, 32140, 92, tuple(range(63)))


@pytest.mark.parametrize(
    ("fields", "field", "why"),
    [
        ({"input_length": None}, "input_length", "missing"),
        ({"timestamp": "soon"}, "timestamp", "must be a number"),
        ({"output_length": -1}, "output_length", "non-negative"),
        ({"output_length": 2.5}, "output_length", "must be an integer"),
        ({"hash_ids": "1,2"}, "hash_ids", "must be a list"),
        ({"hash_ids": [1, -2]}, r"hash_ids\[1\]", "non-negative"),
        ({"hash_ids": [1, 2, 3]}, "hash_ids", "has 3 ids but 'input_length' 1000 needs 2 blocks of 512"),
    ],
)
def test_a_format_error_names_the_line_and_the_field(
    tmp_path: Path, fields: dict[str, object], field: str, why: str
) -> None:
    path = write(tmp_path, [line(), line(timestamp=5), line(**fields)])
    with pytest.raises(TraceFormatError, match=rf"trace.jsonl line 3: field '{field}'.*{why}"):
        index_trace(path)


def test_a_line_that_is_not_json_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="line 2: not JSON"):
        index_trace(write(tmp_path, [line(), '{"timestamp": 1,']))


def test_what_guidellm_accepts_is_accepted(tmp_path: Path) -> None:
    """Zero token counts, renamed columns, a block size other than 512, extra fields, unsorted rows."""
    lines = [
        json.dumps({"ts": 900, "in": 0, "out": 0, "ids": [], "extra": "x"}),
        json.dumps({"ts": 100, "in": 257, "out": 3, "ids": [7, 8, 9]}),
    ]
    index = index_trace(write(tmp_path, lines), block_size=128, columns=TraceColumns("ts", "in", "out", "ids"))
    assert [r.line for r in index] == [2, 1]  # time order, not file order
    assert [r.input_length for r in index] == [257, 0]


def test_window_and_limit_keep_the_first_requests_in_time_order(tmp_path: Path) -> None:
    stamps = [0, 1500, 2500, 2000, 9000, 3000]
    path = write(tmp_path, [line(timestamp=t) for t in stamps])
    assert [r.timestamp_ms for r in index_trace(path, Window.parse("1.5:3"))] == [1500, 2000, 2500]
    assert [r.timestamp_ms for r in index_trace(path, Window.parse("2:", limit=2))] == [2000, 2500]
    assert [r.timestamp_ms for r in index_trace(path, Window.parse(None, limit=3))] == [0, 1500, 2000]
    assert index_trace(path, Window.parse(":1")).read == len(stamps)


@pytest.mark.parametrize("text", ["5", "a:b", "10:5", "3:3"])
def test_a_bad_window_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--window"):
        Window.parse(text)
    assert Window.parse(":").end_s == math.inf


def test_equal_hash_ids_give_equal_token_blocks_and_different_ids_differ() -> None:
    a = TraceRequest(1, 0.0, 1100, 1, (10, 11, 12))
    b = TraceRequest(2, 0.0, 1300, 1, (10, 11, 13))
    c = TraceRequest(3, 0.0, 600, 1, (20, 11))
    prompts = Prompts(512)
    ta, tb, tc = prompts.tokens(a), prompts.tokens(b), prompts.tokens(c)
    assert (len(ta), len(tb), len(tc)) == (1100, 1300, 600)
    assert ta[:1024] == tb[:1024] and ta[1024:1100] != tb[1024:1100]
    assert tc[:512] != ta[:512] and tc[512:] == ta[512:600]  # same id 11, its block cut to what c's length leaves
    assert block_tokens(10, 512)[:ID_WORDS] != block_tokens(10 + 8192, 512)[:ID_WORDS]
    # What the engines see: equal chained block hashes exactly over the shared ids' full blocks.
    ha, hb = block_hashes(ta, 16), block_hashes(tb, 16)
    shared = sum(1 for x, y in zip(ha, hb, strict=False) if x == y)
    assert shared == 1024 // 16
    assert len(prompts.text(a).split()) == 1100


def test_any_integer_hash_id_gives_a_prompt(tmp_path: Path) -> None:
    """guidellm takes any integer id; ids past what ID_WORDS words can spell are numbered densely as first seen."""
    from bench.fake_engine.timing import EngineTiming
    from bench.replay.workload import build

    big = 8192**3
    path = write(
        tmp_path,
        [
            line(timestamp=0, hash_ids=[big, 2**70]),
            line(timestamp=1, hash_ids=[big, big + 1]),
        ],
    )
    workload = build(index_trace(path), EngineTiming(), 16)
    first, second = (r.body["prompt"].split() for r in workload.bench_requests())
    assert len(first) == len(second) == 1000
    assert first[:512] == second[:512] and first[512:] != second[512:]
    assert workload.bound_hit_rate == pytest.approx(512 / 2000)


def test_the_bound_computes_each_distinct_block_once() -> None:
    bound = PrefixBound(512, 16)
    assert bound.hit(TraceRequest(1, 0.0, 1100, 1, (1, 2, 3))) == 0
    assert bound.hit(TraceRequest(2, 0.0, 1100, 1, (1, 2, 3))) == 1088  # the last token is computed: 1099 -> 1088
    assert bound.hit(TraceRequest(3, 0.0, 1500, 1, (1, 2, 4))) == 1024
    assert bound.hit(TraceRequest(4, 0.0, 1536, 1, (1, 2, 3))) == 1088  # block 3 was only 76 tokens long before
    assert bound.hit(TraceRequest(5, 0.0, 512, 1, (9,))) == 0
    assert bound.hit_rate == pytest.approx((1088 + 1024 + 1088) / (1100 * 2 + 1500 + 1536 + 512))


def test_the_bound_keys_a_block_by_its_prefix() -> None:
    """Engines chain block hashes: id 2 computed after id 5 is not a hit after id 1."""
    bound = PrefixBound(512, 16)
    bound.hit(TraceRequest(1, 0.0, 1024, 1, (1, 9)))
    bound.hit(TraceRequest(2, 0.0, 1024, 1, (5, 2)))
    assert bound.hit(TraceRequest(3, 0.0, 1024, 1, (1, 2))) == 512
    assert bound.hit(TraceRequest(4, 0.0, 1024, 1, (1, 2))) == 1008


def test_peak_rate_is_the_busiest_window() -> None:
    assert peak_rate([0, 1, 2, 30, 30.5, 31, 31.5, 39.9], window_s=10) == pytest.approx(0.5)


def test_the_peak_of_a_trace_shorter_than_the_window_is_over_its_span() -> None:
    """Five arrivals in 4 s: 1.25 req/s, as the mean rate counts them, not 5 over a 10 s window nobody sent in."""
    assert peak_rate([0, 1, 2, 3, 4], window_s=10) == pytest.approx(1.25)
    assert peak_rate([7.0], window_s=10) == 1.0 and peak_rate([], window_s=10) == 0.0


def test_the_replay_stops_on_a_format_error_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.replay.__main__ import main

    path = write(tmp_path, [line(), line(output_length="many")])
    with pytest.raises(SystemExit) as exit_info:
        main(["--trace", str(path), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "line 2: field 'output_length' must be an integer" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))


def test_a_window_exports_as_a_trace_of_its_own_lines(tmp_path: Path) -> None:
    """What guidellm replays on the endpoint is exactly the window the simulator replayed."""
    from bench.replay.__main__ import main

    lines = [line(timestamp=t) for t in (0, 3000, 1000, 9000)]
    path = write(tmp_path, lines)
    out = tmp_path / "window.jsonl"
    main(["--trace", str(path), "--window", "0.5:5", "--export", str(out)])
    assert out.read_text().splitlines() == [lines[2], lines[1]]
    assert [r.timestamp_ms for r in index_trace(out)] == [1000, 3000]


def test_the_workload_keeps_the_gaps_scaled_and_skips_what_vllm_would_refuse(tmp_path: Path) -> None:
    from bench.fake_engine.timing import EngineTiming
    from bench.replay.workload import build

    path = write(
        tmp_path,
        [
            line(timestamp=10_000),
            line(timestamp=12_000, input_length=0, hash_ids=[]),
            line(timestamp=14_000, input_length=2000, hash_ids=[1, 2, 3, 4]),
            line(timestamp=16_000, output_length=0),
        ],
    )
    workload = build(index_trace(path), EngineTiming(time_scale=4.0), 16, max_context=1500, speedup=2.0)
    assert workload.skipped == {"empty prompt": 1, "longer than the model's context": 1}
    requests = list(workload.bench_requests())
    assert [r.at_s for r in requests] == [0.0, 12.0]  # 6 trace s, twice as fast, 4 wall ms a modelled ms
    assert workload.arrivals_s == [0.0, 3.0] and workload.rate_rps == pytest.approx(2 / 3)
    assert [r.body["max_tokens"] for r in requests] == [8, 1]
    assert workload.bound_hit_rate == pytest.approx(992 / 2000)  # the second prompt repeats ids 1, 2


def test_the_workload_holds_hash_ids_not_prompts(tmp_path: Path) -> None:
    """A window's memory is its ids: 40 prompts of 32768 tokens (~9 MB of text) keep under 1 MB after build() and
    after the planner's view of them; each prompt is built only when the runner or the simulation reads it."""
    import tracemalloc

    from bench.fake_engine.timing import EngineTiming
    from bench.plan.traffic import trace_requests
    from bench.replay.workload import build

    path = write(
        tmp_path,
        [line(timestamp=i, input_length=32768, hash_ids=list(range(i * 64, i * 64 + 64))) for i in range(40)],
    )
    index = index_trace(path)
    tracemalloc.start()
    try:
        workload = build(index, EngineTiming(), 16)
        planned = trace_requests(workload)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000
    sent = next(workload.bench_requests())
    assert len(sent.body["prompt"].split()) == 32768 == len(planned[0].tokens) == len(list(planned[0].tokens))
    assert [word(i) for i in planned[0].tokens] == sent.body["prompt"].split()
