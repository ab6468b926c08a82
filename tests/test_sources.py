"""Flow readers on real logs (tests/data, see SOURCE.txt) and on generated malformed input."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from netanomd.errors import InputError
from netanomd.flow import FLOW_SCHEMA, FlowBatch
from netanomd.sources import ReadStats, Source
from netanomd.sources.files import detect_format, open_source, read_batches
from netanomd.sources.suricata_eve import parse_eve_line
from netanomd.sources.zeek_log import ZeekTsvHeader, zeek_tsv_lines_to_batch

DATA = Path(__file__).parent / "data"


def read(path: Path, batch_size: int = 65_536) -> tuple[FlowBatch, Source]:
    src = open_source(path, batch_size=batch_size)
    batches = list(src.batches())
    for b in batches:
        assert b.table.schema.equals(FLOW_SCHEMA)
    return FlowBatch.concat(batches), src


def test_zeek_tsv_first_row_and_labels() -> None:
    batch, src = read(DATA / "zeek/ctu-sme-11-head200.conn.log")
    assert len(batch) == 200 and src.stats.rows == 200 and src.stats.malformed == 0
    r = batch.record(1)  # second line, checked by hand
    assert (r.ts, r.uid, r.orig_h, r.orig_p, r.resp_h, r.resp_p) == (
        1676851429.981575,
        "Cwgb6g4uF7qxeTJit6",
        "192.168.1.109",
        34606,
        "185.125.190.17",
        80,
    )
    assert (r.proto, r.service, r.duration, r.orig_bytes, r.resp_bytes) == (
        "tcp",
        "http",
        0.038607,
        87,
        147,
    )
    assert (r.conn_state, r.local_orig, r.history, r.orig_pkts, r.resp_ip_bytes) == (
        "SF",
        None,
        "ShADTdtfFa",
        10,
        726,
    )
    assert (r.label, r.detailed_label, r.source) == (
        "Benign",
        "From_benign-To_benign-Ubuntu",
        "zeek",
    )


def test_batches_are_bounded_and_complete() -> None:
    whole, _ = read(DATA / "zeek/ctu-sme-11-head200.conn.log")
    src = open_source(DATA / "zeek/ctu-sme-11-head200.conn.log", batch_size=64)
    sizes = [len(b) for b in src.batches()]
    assert max(sizes) <= 64 and sum(sizes) == 200
    again = FlowBatch.concat(
        list(open_source(DATA / "zeek/ctu-sme-11-head200.conn.log", batch_size=7).batches())
    )
    assert again.table.equals(whole.table)


def test_gzip_is_read_by_content(tmp_path: Path) -> None:
    gz = tmp_path / "conn.log.renamed"
    with open(DATA / "zeek/ctu-sme-11-head200.conn.log", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    batch, _ = read(gz)
    plain, _ = read(DATA / "zeek/ctu-sme-11-head200.conn.log")
    assert batch.table.equals(plain.table)


def test_iot23_space_separated_tail() -> None:
    batch, src = read(DATA / "zeek/iot23-34-1-head100.conn.log.labeled")
    assert len(batch) == 100 and src.stats.malformed == 0
    r = batch.record(0)
    assert (r.uid, r.conn_state, r.orig_pkts, r.label, r.detailed_label) == (
        "CrDn63WjJEmrWGjqf",
        "S0",
        3,
        "Benign",
        None,
    )
    assert r.duration == 3.139211
    assert batch.record(1).duration is None  # '-' is unset


def test_iot23_csv_export() -> None:
    batch, src = read(DATA / "zeek/iot23-8-1-head100.csv")
    assert detect_format(DATA / "zeek/iot23-8-1-head100.csv") == "zeek-csv"
    assert len(batch) == 100 and src.stats.malformed == 0
    r = batch.record(0)
    assert (r.uid, r.orig_h, r.resp_p, r.proto, r.service, r.history, r.label) == (
        "C5JLGOoxIw2dBZt47",
        "192.168.100.113",
        123,
        "udp",
        None,
        "Dd",
        "Benign",
    )


def test_zeek_json_and_tsv_of_the_same_capture_agree() -> None:
    js, _ = read(DATA / "zeek/ssh_sshguess.json.conn.log")
    tsv, _ = read(DATA / "zeek/ssh_sshguess.tsv.conn.log")
    assert detect_format(DATA / "zeek/ssh_sshguess.json.conn.log") == "zeek-json"
    assert len(js) == len(tsv) == 15
    js = js.take(np.argsort(js.numeric("ts")))
    tsv = tsv.take(np.argsort(tsv.numeric("ts")))
    for col in (  # two Zeek runs over one pcap: uids differ (random), the rest must agree
        "orig_h",
        "orig_p",
        "resp_p",
        "conn_state",
        "history",
        "orig_ip_bytes",
        "community_id",
        "local_orig",
    ):
        assert js.column(col).to_pylist() == tsv.column(col).to_pylist(), col
    # TSV prints durations with 6 decimals; JSON carries the full double.
    np.testing.assert_allclose(js.numeric("duration"), tsv.numeric("duration"), atol=1e-6)
    assert js.record(0).community_id == tsv.record(0).community_id
    assert js.record(0).community_id is not None


def test_suricata_eve_flows_only() -> None:
    batch, src = read(DATA / "eve/test6-malicious-head400.json")
    assert len(batch) == 14
    # alerts wait for their flows, which come after line 400: none arrives
    assert src.stats.skipped == {"alert without flow event": 207, "dns": 178, "tls": 1}
    r = batch.record(0)
    assert (r.uid, r.flow_id, r.orig_h, r.orig_p, r.resp_h, r.resp_p, r.proto) == (
        "S445348883402532",
        445348883402532,
        "192.168.1.132",
        1900,
        "192.168.1.129",
        44232,
        "udp",
    )
    # 4056 bytes on the wire in 12 packets: minus 12 Ethernet headers.
    assert (r.orig_pkts, r.orig_ip_bytes, r.orig_bytes, r.resp_pkts) == (
        12,
        4056 - 12 * 14,
        None,
        0,
    )
    assert r.ts == pytest.approx(1622990335.855844)  # 2021-06-06T16:38:55.855844+0200
    assert r.duration == pytest.approx(1.107183, abs=1e-6)
    assert (r.conn_state, r.service, r.source) == ("S0", None, "suricata")


def test_parse_eve_line() -> None:
    line = (DATA / "eve/test6-malicious-head400.json").read_bytes().splitlines()
    flows = [parse_eve_line(x) for x in line]
    assert sum(f is not None for f in flows) == 14
    with pytest.raises(InputError, match=r"sock:3: invalid JSON"):
        parse_eve_line(b'{"event_type": "flow", ', "sock:3")
    with pytest.raises(InputError, match="missing or bad field"):
        parse_eve_line(b'{"event_type": "flow", "src_ip": "1.2.3.4"}')


def test_cicflowmeter() -> None:
    batch, src = read(DATA / "cic/portscan-head50.csv")
    assert len(batch) == 50 and src.stats.malformed == 0
    r = batch.record(0)
    assert (r.orig_h, r.orig_p, r.resp_h, r.resp_p, r.proto) == (
        "172.16.0.1",
        40620,
        "192.168.10.50",
        80,
        "tcp",
    )
    assert r.duration == pytest.approx(5.021059)  # microseconds in the file
    assert (r.orig_pkts, r.resp_pkts, r.orig_bytes, r.resp_bytes) == (6, 5, 703, 1414)
    assert r.label == "PortScan" and r.source == "cicflowmeter"
    assert r.ts == 1499389500.0  # 7/7/2017 1:05, day first, taken as UTC


def _corrupt(tmp_path: Path) -> Path:
    lines = (DATA / "zeek/ctu-sme-11-head200.conn.log").read_bytes().split(b"\n")
    # Header is 8 lines, so data line k (1-based) is file line 8 + k.
    lines[9] = lines[9][:30]  # file line 10: truncated
    f = lines[12].split(b"\t")
    f[9] = b"lots"  # line 13: orig_bytes not a number
    lines[12] = b"\t".join(f)
    lines[15] = b"\xff\xfe garbage \x01\x02"  # line 16: binary junk
    f = lines[20].split(b"\t")
    f[3] = b"3.5"  # line 21: a port that is not a whole number
    lines[20] = b"\t".join(f)
    bad = tmp_path / "bad.conn.log"
    bad.write_bytes(b"\n".join(lines))
    return bad


def test_malformed_lines_are_reported_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = _corrupt(tmp_path)
    batch, src = read(bad)
    good, _ = read(DATA / "zeek/ctu-sme-11-head200.conn.log")
    assert src.stats.malformed == 4
    where = [p.split(": ", 1)[0] for p in src.stats.problems]
    assert where == [f"{bad}:10", f"{bad}:16", f"{bad}:13", f"{bad}:21"] or sorted(where) == sorted(
        [f"{bad}:10", f"{bad}:13", f"{bad}:16", f"{bad}:21"]
    )
    assert any("expected 23 fields" in p for p in src.stats.problems)
    assert any("lots" in p for p in src.stats.problems)
    # Everything else is still read, unchanged.
    assert len(batch) == 196
    kept = set(batch.column("uid").to_pylist())
    assert kept < set(good.column("uid").to_pylist())
    assert "bad.conn.log:10" in caplog.text


def test_not_a_log(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    html = tmp_path / "page.log"
    html.write_text("<html><body>404</body></html>\n")
    other_json = tmp_path / "other.json"
    other_json.write_text('{"hello": "world"}\n')
    nofields = tmp_path / "nofields.log"
    nofields.write_text("#separator \\x09\n#path\tconn\n")
    dns = tmp_path / "dns.log"
    dns.write_text("#separator \\x09\n#fields\tts\tquery\n1.0\texample.com\n")
    for path, msg in [
        (png, "binary data"),
        (empty, "empty file"),
        (html, "not a flow log"),
        (other_json, "neither a Zeek conn log nor Suricata EVE"),
        (nofields, "no #fields"),
        (dns, "not a Zeek conn log"),
        (tmp_path, "is a directory"),
        (tmp_path / "absent", "cannot open"),
    ]:
        with pytest.raises(InputError, match=msg) as info:
            list(open_source(path).batches())
        assert str(path) in str(info.value)


def test_read_batches_merges_stats() -> None:
    stats = ReadStats()
    paths = [DATA / "zeek/ctu-sme-11-head200.conn.log", DATA / "eve/test6-malicious-head400.json"]
    n = sum(len(b) for b in read_batches(paths, stats))
    assert n == stats.rows == 214 and stats.skipped["alert without flow event"] == 207


def test_follower_helper_turns_appended_lines_into_a_batch() -> None:
    lines = (DATA / "zeek/ctu-sme-11-head200.conn.log").read_bytes().split(b"\n")
    header = ZeekTsvHeader.parse(lines[:8], "conn.log")
    stats = ReadStats()
    batch = zeek_tsv_lines_to_batch(lines[8:18], header, stats, "conn.log", first_line=9)
    assert batch is not None and len(batch) == 10 and stats.rows == 10


def test_memory_does_not_grow_with_file_length(tmp_path: Path) -> None:
    """Peak traced memory reading 4x more rows stays the same (bounded by the read block)."""
    import tracemalloc

    src_lines = (DATA / "zeek/ctu-sme-11-head200.conn.log").read_bytes().split(b"\n")
    header, body = src_lines[:8], [ln for ln in src_lines[8:] if ln and not ln.startswith(b"#")]

    def peak(copies: int) -> int:
        path = tmp_path / f"c{copies}.log"
        with open(path, "wb") as fh:
            fh.write(b"\n".join(header) + b"\n")
            for _ in range(copies):
                fh.write(b"\n".join(body) + b"\n")
        tracemalloc.start()
        rows = sum(len(b) for b in open_source(path, batch_size=2000).batches())
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert rows == 200 * copies
        return top

    small, large = peak(600), peak(2400)  # 120,000 vs 480,000 rows (both > one read block)
    assert large < 1.3 * small, (small, large)


def test_data_blocks_cut_whole_lines_at_any_read_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks hold max_lines whole lines (the last may hold fewer) with their numbers,
    whatever the read size, so batches do not depend on it; ``skip`` drops a header; an
    unterminated last line is still a line."""
    import io

    from netanomd.sources import _text

    text = (DATA / "zeek/ctu-sme-11-head200.conn.log").read_bytes().rstrip(b"\n")
    lines = text.split(b"\n")
    for read_size in (7, 1000, 1 << 20):
        monkeypatch.setattr(_text, "BLOCK_BYTES", read_size)
        blocks = list(_text.data_blocks(io.BytesIO(text), 33, skip=8))
        assert all(b.endswith(b"\n") and b.count(b"\n") == 33 for _, b in blocks[:-1])
        assert 0 < blocks[-1][1].count(b"\n") <= 33
        got = [ln for _, b in blocks for ln in _text.split_lines(b)]
        assert got == lines[8:]
        starts = [n for n, _ in blocks]
        sizes = [b.count(b"\n") for _, b in blocks]
        assert starts == [9 + sum(sizes[:i]) for i in range(len(blocks))]


def test_typed_pass_and_line_by_line_read_the_same(tmp_path: Path) -> None:
    """A block Arrow parses typed in one pass and the careful line-by-line path agree on
    every value, and a block with any odd line (bad values, a short line, comments, CRLF,
    an empty line, ``(empty)``) is read as the careful path reads it, problems named by line."""
    text = (DATA / "zeek/ctu-sme-11-head200.conn.log").read_bytes()
    lines = text.rstrip(b"\n").split(b"\n")
    header = ZeekTsvHeader.parse(lines[:8], "x")
    body = [ln for ln in lines[8:] if not ln.startswith(b"#")]

    def one_by_one(data_lines: list[bytes], first: int) -> tuple[FlowBatch, list[str]]:
        stats = ReadStats()
        parts = [
            zeek_tsv_lines_to_batch([ln], header, stats, "x", first_line=first + i)
            for i, ln in enumerate(data_lines)
        ]
        return FlowBatch.concat([p for p in parts if p is not None]), stats.problems

    clean = tmp_path / "clean.log"
    clean.write_bytes(text)
    batch, src = read(clean, batch_size=64)
    expected, _ = one_by_one(body, 9)
    assert batch.table.equals(expected.table) and src.stats.malformed == 0

    odd = list(body)
    f = odd[5].split(b"\t")
    f[5] = b"70000"  # a port out of range
    odd[5] = b"\t".join(f)
    f = odd[40].split(b"\t")
    f[9] = b"12abc"  # orig_bytes not a number
    odd[40] = b"\t".join(f)
    # In the last block, which has no odd line but these (and the #close): the typed pass.
    f = odd[193].split(b"\t")
    f[7] = b"(empty)"  # service: the empty string
    odd[193] = b"\t".join(f)
    f = odd[195].split(b"\t")
    f[8] = b"inf"  # a duration that is not finite: kept, as null
    odd[195] = b"\t".join(f)
    odd[100] = odd[100].rsplit(b"\t", 3)[0]  # a short line
    odd[120] = odd[120] + b"\r"  # CRLF
    odd.insert(150, b"")  # an empty line
    odd.insert(160, b"#a comment in the middle")
    messy = tmp_path / "messy.log"
    messy.write_bytes(b"\n".join(lines[:8] + odd) + b"\n#close\t2026\n")
    batch, src = read(messy, batch_size=64)
    expected, problems = one_by_one(odd, 9)
    assert batch.table.equals(expected.table)
    assert [p.replace(str(messy), "x") for p in src.stats.problems] == problems
    assert [p.split(": ")[0] for p in problems] == ["x:14", "x:49", "x:109"]
    assert batch.record(190).service == "" and batch.record(192).duration is None


def test_zeek_json_column_wise_and_line_by_line_read_the_same(tmp_path: Path) -> None:
    """A Zeek JSON block decoded column-wise in one Arrow pass and the per-line path agree on
    every value; a block with any line Arrow would take differently (a value out of range or
    of another type, NaN, two objects on a line, text that is not UTF-8 even in a key no
    column reads, a blank line) is read as the per-line path reads it, problems named by line."""
    from netanomd.sources.zeek_log import _json_rows

    lines = (DATA / "zeek/wikipedia.json.conn.log").read_bytes().rstrip(b"\n").split(b"\n")

    def one_by_one(data_lines: list[bytes]) -> tuple[FlowBatch, list[str]]:
        stats = ReadStats()
        parts = [_json_rows([ln], stats, "x", first_line=1 + i) for i, ln in enumerate(data_lines)]
        return FlowBatch.concat([p for p in parts if p is not None]), stats.problems

    clean = tmp_path / "clean.json"
    clean.write_bytes(b"\n".join(lines) + b"\n")
    batch, src = read(clean, batch_size=8)
    expected, _ = one_by_one(lines)
    assert batch.table.equals(expected.table) and src.stats.malformed == 0
    assert len(batch) == len(lines)

    odd = list(lines)
    odd[3] = odd[3].replace(b'"id.resp_p":', b'"id.resp_p":70000,"x":')  # a port out of range
    odd[9] = re.sub(rb'"orig_pkts":\d+', b'"orig_pkts":"12abc"', odd[9])  # not a number
    odd[12] = odd[12].replace(b'"uid":', b'"duration":NaN,"uid":')  # not JSON
    odd[17] = odd[17] + b" " + odd[17]  # two objects on one line
    odd[20] = odd[20].replace(b'"uid":', b'"x\xff":1,"uid":')  # not UTF-8, in a key skipped
    odd.insert(26, b"")  # a blank line
    messy = tmp_path / "messy.json"
    messy.write_bytes(b"\n".join(odd) + b"\n")
    batch, src = read(messy, batch_size=8)
    expected, problems = one_by_one(odd)
    assert batch.table.equals(expected.table)
    # (in a block, values are checked column by column after the lines are decoded)
    assert sorted(p.replace(str(messy), "x") for p in src.stats.problems) == sorted(problems)
    assert [p.split(": ")[0] for p in problems] == ["x:4", "x:10", "x:13", "x:18", "x:21"]
    assert len(batch) == len(lines) - 5
