"""The benchmark runs and reports well-formed figures (no wall-time assertions)."""
import json
import os

import pytest

from minifrrn.bench import median_times, run_benchmarks, spread_pct
from minifrrn.cli import main


def test_bench_rows_are_well_formed():
    rows, machine = run_benchmarks("cpu", tiny=True, repeats=2)
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


def test_the_spread_of_a_single_repeat_is_unknown_not_zero():
    from minifrrn.bench import spread_pct
    assert spread_pct([0.5]) is None
    assert spread_pct([1.0, 1.5, 2.0]) == pytest.approx(100.0 * 1.0 / 1.5)


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--tiny", "--repeats", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["machine"]["device"] == "cpu" and len(data["rows"]) >= 10
    # how the memory-bound floors were measured goes with the figures, for --compare
    from minifrrn.bench import MEMORY_FLOOR
    assert data["machine"]["memory_floor"] == MEMORY_FLOOR
    assert "ratio" in capsys.readouterr().out


def test_bench_gpu_without_gpu_is_a_clear_error(capsys, monkeypatch):
    from minifrrn import backend
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    assert main(["bench", "--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "minifrrn[gpu]" in err and len(err.splitlines()) == 1


def test_every_conv_has_one_row_per_shape_of_the_step_and_their_weighted_total():
    from minifrrn import nn
    from minifrrn.models import frrn_tiny
    rows, _ = run_benchmarks("cpu", tiny=True, repeats=1, every_conv=True)
    *convs, total = rows
    # every Conv2d layer of the model runs once per forward: the counts add up to the layers
    layers = sum(isinstance(m, nn.Conv2d) for _, m in frrn_tiny(seed=0).named_modules())
    assert sum(r.count for r in convs) == total.count == layers
    assert len({r.shape for r in convs}) == len(convs)  # one row per distinct shape
    assert all(r.name == f"frrn_tiny conv x{r.count}" and r.ratio > 0 for r in convs)
    assert "3->16 32x64 k5 no gx" in convs[0].shape  # the stem: its input is the image
    assert total.ms == pytest.approx(sum(r.count * r.ms for r in convs))
    assert total.floor_ms == pytest.approx(sum(r.count * r.floor_ms for r in convs))
    assert total.ratio == pytest.approx(total.ms / total.floor_ms)


@pytest.mark.parametrize("builder,checkpoint", [("frrn_b", False), ("frrn_a", True)])
def test_conv_shapes_are_recorded_without_computing_and_match_a_real_forward(monkeypatch, builder,
                                                                             checkpoint):
    import numpy as np

    from minifrrn import models, nn, tensor
    from minifrrn.bench import _conv_shapes_of
    from minifrrn.functional import conv as conv_module
    model = getattr(models, builder)(seed=0, checkpoint=checkpoint)
    x = tensor(np.random.default_rng(5).random((1, 3, 64, 128), dtype=np.float32))
    computing, seen = conv_module.Conv2dFunction.forward, []

    def observing(self, xa, Wa, b=None):
        seen.append((xa.shape[0], xa.shape[1], Wa.shape[0], xa.shape[2], xa.shape[3], Wa.shape[2]))
        return computing(self, xa, Wa, b)

    monkeypatch.setattr(conv_module.Conv2dFunction, "forward", observing)
    recorded = _conv_shapes_of(model, x)
    assert seen == []  # the record computed no convolution
    model(x)  # a real training forward, every convolution computed
    assert [shape[:6] for shape in recorded] == seen
    # every Conv2d layer once; gx for all but the stem, whose input is the image
    assert len(recorded) == sum(isinstance(m, nn.Conv2d) for _, m in model.named_modules())
    assert recorded[0][6] is False and all(shape[6] for shape in recorded[1:])


def test_every_conv_refuses_an_unknown_model(capsys):
    with pytest.raises(ValueError, match="--every-conv takes one of frrn_a, frrn_b, got 'frrn_c'"):
        run_benchmarks("cpu", every_conv="frrn_c")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--every-conv", "frrn_c"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frrn_c'" in capsys.readouterr().err


@pytest.mark.parametrize("repeats", ["0", "-3"])
def test_bench_cli_refuses_repeats_below_one(repeats, capsys):
    assert main(["bench", "--tiny", "--repeats", repeats]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--repeats must be >= 1 (or left out for the default), got {repeats}" in err
    assert len(err.splitlines()) == 1


def test_median_times_interleaves_the_functions_it_compares():
    calls = []
    medians = median_times([lambda: calls.append("a"), lambda: calls.append("b")], repeats=3,
                           warmup=1)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three timed rounds, in turn
    assert len(medians) == 2 and all(m >= 0 for m in medians)


def test_spread_is_the_range_over_the_median():
    assert spread_pct([2.0, 1.0, 4.0]) == 150.0  # (4 − 1) / 2
    assert spread_pct([3.0, 3.0, 3.0]) == 0.0


def test_model_floor_sums_each_repeats_conv_gemms_times_their_counts(monkeypatch):
    """A model step is timed in turn with one run of each distinct conv shape's floor GEMMs: each
    repeat's floor is Σ count × that repeat's GEMM time, the row's ratio the median step over the
    median floor."""
    import collections
    import statistics

    import numpy as np

    from minifrrn import bench
    from minifrrn.autograd import tensor
    from minifrrn.models import frrn_tiny

    step_times = [1.0, 2.0, 4.0]
    calls = []

    def fake_timed_runs(fns, device="cpu", repeats=5, warmup=1):
        calls.append(len(fns))
        # the k-th floor function "takes" (k + 1)·(r + 1) ms in repeat r
        return [step_times] + [[(k + 1) * (r + 1) * 1e-3 for r in range(repeats)]
                               for k in range(len(fns) - 1)]

    monkeypatch.setattr(bench, "timed_runs", fake_timed_runs)
    ctx = bench.Context("cpu", 3, np)
    bench._bench_model(ctx, "frrn_tiny", frrn_tiny, 32, 64)
    counts = collections.Counter(bench._conv_shapes_of(
        frrn_tiny(seed=0), tensor(np.zeros((1, 3, 32, 64), np.float32))))
    assert calls == [1 + len(counts)] and max(counts.values()) > 1
    floors = [sum(count * (k + 1) * (r + 1) * 1e-3 for k, count in enumerate(counts.values()))
              for r in range(3)]
    (row,) = ctx.rows
    assert np.isclose(row.floor_ms, 1e3 * statistics.median(floors))
    assert np.isclose(row.ratio, statistics.median(step_times) / statistics.median(floors))
    ratios = [t / f for t, f in zip(step_times, floors)]
    assert np.isclose(row.spread_pct, spread_pct(ratios))


def test_the_commit_is_the_source_trees_wherever_the_bench_runs(tmp_path, monkeypatch):
    import minifrrn
    from minifrrn.bench import _commit
    monkeypatch.chdir(os.path.dirname(minifrrn.__file__))
    in_tree = _commit()
    monkeypatch.chdir(tmp_path)  # not a git checkout
    assert _commit() == in_tree


def test_bench_json_into_a_missing_folder_is_refused_before_the_bench_runs(tmp_path, capsys,
                                                                           monkeypatch):
    import minifrrn.bench
    monkeypatch.setattr(minifrrn.bench, "run_benchmarks",
                        lambda *a, **k: pytest.fail("the bench ran before the path was checked"))
    target = tmp_path / "missing" / "b.json"
    assert main(["bench", "--tiny", "--json", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"folder {target.parent} does not exist" in err and len(err.splitlines()) == 1


def _write_run(path, rows, commit, gemm=300.0, copy=14.0):
    from minifrrn.bench import Row, to_json
    machine = {"device": "cpu", "gemm_gflops": gemm, "copy_bandwidth_gbs": copy, "commit": commit}
    path.write_text(to_json([Row(*row) for row in rows], machine))
    return str(path)


def test_compare_puts_two_runs_side_by_side(tmp_path, capsys):
    old = _write_run(tmp_path / "old.json", [("conv2d fwd+bwd", "1x8->8 16x16 k3", 10.0, 8.0, 1.25),
                                             ("max_pool2d 2x2", "1x8x16x16", 4.0, 2.0, 2.0),
                                             ("gone", "1x1", 1.0)], "aaaaaaa", gemm=250.0)
    new = _write_run(tmp_path / "new.json", [("max_pool2d 2x2", "1x8x16x16", 3.0, 2.0, 1.5),
                                             ("conv2d fwd+bwd", "1x8->8 16x16 k3", 8.0, 6.4, 1.25),
                                             ("added", "2x2", 5.0)], "bbbbbbb")
    assert main(["bench", "--compare", old, new]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("old: cpu, commit aaaaaaa, large GEMM 250 GFLOP/s")
    assert out[1].startswith("new: cpu, commit bbbbbbb, large GEMM 300 GFLOP/s")
    pool = next(line for line in out if line.startswith("max_pool2d 2x2"))
    assert pool.split()[-5:] == ["2.00", "1.50", "4.00", "3.00", f"{3.0 / 4.0:.2f}"]
    conv = next(line for line in out if line.startswith("conv2d fwd+bwd"))
    assert conv.split()[-5:] == ["1.25", "1.25", "10.00", "8.00", f"{8.0 / 10.0:.2f}"]
    assert out[-2:] == ["only in old: gone  1x1", "only in new: added  2x2"]


def test_compare_reads_what_the_bench_writes(tmp_path, capsys):
    paths = [str(tmp_path / f"run{i}.json") for i in (1, 2)]
    for path in paths:
        assert main(["bench", "--tiny", "--repeats", "1", "--json", path]) == 0
    rows = json.loads(open(paths[0]).read())["rows"]
    capsys.readouterr()
    assert main(["bench", "--compare", *paths]) == 0
    out = capsys.readouterr().out
    assert all(row["name"] in out for row in rows) and "only in" not in out


@pytest.mark.parametrize("content,message", [
    (None, "does not exist: give a file written by minifrrn bench --json"),
    ("not json {", "is not JSON"),
    ('{"rows": []}', "is not a minifrrn bench --json file"),
    ('{"machine": {"device": "cpu", "gemm_gflops": 1, "copy_bandwidth_gbs": 1}, "rows": [{"x": 1}]}',
     "is not a minifrrn bench --json file"),
    ("[1, 2]", "is not a minifrrn bench --json file"),
])
def test_compare_names_a_file_it_cannot_read(tmp_path, capsys, content, message):
    good = _write_run(tmp_path / "good.json", [("a", "1", 1.0)], "ccccccc")
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert main(["bench", "--compare", good, str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and message in err and len(err.splitlines()) == 1


def test_compare_refuses_options_that_would_run_a_bench(tmp_path, capsys):
    path = _write_run(tmp_path / "run.json", [("a", "1", 1.0)], "ddddddd")
    assert main(["bench", "--compare", path, path, "--quick", "--every-conv"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--compare reads two --json files and runs nothing: drop --quick, --every-conv" in err


def test_bench_json_naming_a_folder_is_refused_before_running(tmp_path, capsys):
    assert main(["bench", "--tiny", "--json", str(tmp_path)]) == 2
    assert "is a folder: give a file name" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--tiny"], ["--device", "gpu"], ["--no-checkpointing"]])
def test_compare_refuses_the_options_of_a_run(tmp_path, capsys, option):
    assert main(["bench", "--compare", "a.json", "b.json"] + option) == 2
    assert f"drop {option[0]}" in capsys.readouterr().err


def test_copy_pass_copies_every_element_on_the_threads_the_ops_use(monkeypatch):
    import numpy as np

    from minifrrn import bench
    from minifrrn.functional import cpu_parallel as par
    monkeypatch.setenv("MINIFRRN_CPU_THREADS", "2")
    threads_seen = set()
    copy_into = np.copyto

    def recording_copy(dst, src):
        import threading
        threads_seen.add(threading.current_thread().name.split("_")[0])
        copy_into(dst, src)

    monkeypatch.setattr(bench.np, "copyto", recording_copy)
    # an odd length above the size at which the ops go parallel: the last piece is a short one
    src = np.random.default_rng(3).standard_normal(par.MIN_PARALLEL_ELEMENTS + 12345).astype(
        np.float32)
    dst = np.full_like(src, np.nan)
    bench.copy_pass(dst, src)
    np.testing.assert_array_equal(dst, src)
    assert threads_seen == {"minifrrn-cpu"}  # on the pool's threads, as the ops' own copies


def test_memory_bound_floor_copies_the_ops_traffic_in_turn_with_it(monkeypatch):
    from minifrrn import bench
    copy_pass, events = bench.copy_pass, []

    def recording_copy_pass(dst, src):
        events.append(("copy", src.nbytes))
        copy_pass(dst, src)

    monkeypatch.setattr(bench, "copy_pass", recording_copy_pass)
    ctx = bench.Context("cpu", 3, bench.np)
    shape = (1, 4, 16, 32)

    def op(x):
        events.append(("op", None))
        return bench.F.max_pool2d(x, 2)

    bench._bench_memory_bound(ctx, "pool", shape, op, lambda xb, yb: 2 * xb + 2 * yb)
    x_bytes = 4 * 16 * 32 * 4
    y_bytes = x_bytes // 4
    # one call of op for its output's shape, then warm-up and repeats alternate op and copy
    assert [kind for kind, _ in events] == ["op"] + ["op", "copy"] * 4
    # the copy reads half the traffic and writes the other half
    assert {size for kind, size in events if kind == "copy"} == {(2 * x_bytes + 2 * y_bytes) // 2}
    (row,) = ctx.rows
    assert row.gflops is None and row.spread_pct is not None


def test_compare_warns_when_the_memory_bound_floors_were_measured_differently(tmp_path, capsys):
    import json

    from minifrrn.bench import MEMORY_BOUND_NOTE, MEMORY_FLOOR
    pool = [("max_pool2d 2x2", "1x8x16x16", 4.0, 2.0, 2.0, None, None, MEMORY_BOUND_NOTE)]
    conv = [("conv2d fwd+bwd", "1x8->8 16x16 k3", 10.0, 8.0, 1.25)]

    def run(name, rows, floor):
        path = _write_run(tmp_path / name, rows, "bbbbbbb")
        if floor:
            data = json.loads(open(path).read())
            data["machine"]["memory_floor"] = floor
            open(path, "w").write(json.dumps(data))
        return path

    earlier = run("earlier.json", pool, None)  # written before the method was recorded
    now, again = run("now.json", pool, MEMORY_FLOOR), run("again.json", pool, MEMORY_FLOOR)
    assert main(["bench", "--compare", earlier, now]) == 0
    note = capsys.readouterr().out.splitlines()[-1]
    assert note.startswith("note: the memory-bound rows' floors were measured differently (old: "
                           "one copy measured once at the start")
    assert note.endswith("compare their times, not their ratios")
    assert main(["bench", "--compare", now, again]) == 0
    assert "note:" not in capsys.readouterr().out
    # runs without memory-bound rows (--every-conv) have nothing the note would be about
    assert main(["bench", "--compare", run("c1.json", conv, None), run("c2.json", conv,
                                                                       MEMORY_FLOOR)]) == 0
    assert "note:" not in capsys.readouterr().out

