"""The benchmark runs and reports well-formed figures (no wall-time assertions)."""
import json

from minifrrn.bench import median_times, run_benchmarks, spread_pct
from minifrrn.cli import main


def test_bench_rows_are_well_formed():
    rows, machine = run_benchmarks("cpu", tiny=True, repeats=1)
    names = " ".join(r.name for r in rows)
    for op in ("conv2d", "batch_norm", "max_pool2d", "upsample_nearest2d", "upsample_bilinear2x",
               "FRRU", "frrn_tiny"):
        assert op in names
    for r in rows:
        assert r.ms > 0
        if r.ratio is not None:
            assert r.ratio > 0 and r.floor_ms > 0
        if "fwd+bwd" in r.name or "train step" in r.name:
            assert r.spread_pct is not None and r.spread_pct >= 0
    assert machine["gemm_gflops"] > 0 and machine["copy_bandwidth_gbs"] > 0


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--tiny", "--repeats", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["machine"]["device"] == "cpu" and len(data["rows"]) >= 10
    assert "ratio" in capsys.readouterr().out


def test_bench_gpu_without_gpu_is_a_clear_error(capsys, monkeypatch):
    from minifrrn import backend
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    assert main(["bench", "--device", "gpu"]) == 2
    assert "minifrrn[gpu]" in capsys.readouterr().err or "gpu" in capsys.readouterr().err


def test_median_times_interleaves_the_functions_it_compares():
    calls = []
    medians = median_times([lambda: calls.append("a"), lambda: calls.append("b")], repeats=3,
                           warmup=1)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three timed rounds, in turn
    assert len(medians) == 2 and all(m >= 0 for m in medians)


def test_spread_is_the_range_over_the_median():
    assert spread_pct([2.0, 1.0, 4.0]) == 150.0  # (4 − 1) / 2
    assert spread_pct([3.0, 3.0, 3.0]) == 0.0
