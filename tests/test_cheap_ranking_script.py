"""benchmarks/cheap_ranking.py on a tiny rank.json whose table is known by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_benchmark_script

from spos.stats.ranking import bootstrap, kendall_tau
from spos.stats.windows import lead_over


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("cheap_ranking")


def tiny_rank_json(path, *, proxies: bool = True, shuffle: int = 0):
    """Eight networks, truth 0.1..0.8: NASWOT orders them exactly, SynFlow exactly backwards, grad-norm ties them
    all; the supernet (by loss) and params follow the truth except for swapped pairs."""
    rng = np.random.default_rng(shuffle)
    truth = np.arange(1, 9) / 10
    rows = []
    for i, accuracy in enumerate(truth):
        row = {"arch": f"{i % 3},{(i // 3) % 3}/0,0", "flops": 100 + (i * 5) % 8, "params": 1000 - 10 * [1, 0, 2, 3, 4,
                                                                                                   5, 7, 6][i],
               "supernet_top1": 0.1, "supernet_loss": 2.0 - 0.1 * [0, 1, 3, 2, 4, 5, 6, 7][i],
               "standalone_top1": float(accuracy), "standalone_runs": [float(accuracy), float(accuracy) + rng.normal(
                   0, 0.01)], "depth": [1, 1, 2, 2, 2, 3, 3, 3][i]}
        if proxies:
            row["proxies"] = {"naswot": float(i), "synflow": float(100 - i), "grad_norm": 1.0}
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"score": "loss", "rows": rows}))
    return path, rows


def test_a_tiny_rank_json_gives_the_table_known_by_hand(script, tmp_path, capsys):
    one, rows = tiny_rank_json(tmp_path / "w1" / "rank.json")
    two, _ = tiny_rank_json(tmp_path / "w2" / "rank.json", shuffle=1)
    summary = script.main(["--rank-json", str(one), str(two), "--fit-sizes", "4", "--splits", "3", "--bootstrap",
                           "30", "--output", str(tmp_path / "summary.json")])
    printed = capsys.readouterr().out
    assert "| NASWOT | 1.00 [1.00, 1.00] | 1.00 [1.00, 1.00] | 1.00 [1.00, 1.00] | 0.00 [0.00, 0.00] |" in printed
    assert "| SynFlow | -1.00 [-1.00, -1.00] | -1.00 [-1.00, -1.00] | -1.00 [-1.00, -1.00] | -2.00 [-2.00, -2.00] |" \
        in printed
    assert "| grad-norm | undefined (tied) |" in printed and "| all proxies |" in printed
    assert "| NASWOT + SynFlow | undefined (tied) |" in printed  # opposite orders: every network tied
    whole = summary["whole"]
    assert whole["best_single"] == "naswot" and "lead over NASWOT" in printed
    truth = [r["standalone_top1"] for r in rows]
    supernet = [-r["supernet_loss"] for r in rows]
    cell = whole["methods"]["supernet"]["windows"][0]
    assert cell["kendall_tau"]["value"] == pytest.approx(kendall_tau(supernet, truth))
    assert cell["kendall_tau"]["low"] == pytest.approx(bootstrap(kendall_tau, supernet, truth, samples=30).low)
    naswot = [r["proxies"]["naswot"] for r in rows]
    assert cell["lead"] == pytest.approx(lead_over(supernet, naswot, truth, samples=30, seed=0))
    study = summary["held_out"][0]
    assert study["fit_size"] == 4 and {"encoding", "encoding + NASWOT", "encoding + all scores"} <= set(
        study["methods"])
    assert study["methods"]["naswot"]["windows"][0] == {"mean": 1.0, "spread": 0.0, "undefined": 0}
    assert "| held-out tau, K=4 (3 splits; mean ± sd) |" in printed
    assert json.loads((tmp_path / "summary.json").read_text())["whole"]["best_single"] == "naswot"


def test_scores_a_rank_json_lacks_leave_out_what_needs_them(script, tmp_path, capsys):
    bare, _ = tiny_rank_json(tmp_path / "bare" / "rank.json", proxies=False)
    summary = script.main(["--rank-json", str(bare), "--fit-sizes", "4", "--splits", "2", "--bootstrap", "10"])
    assert set(summary["whole"]["methods"]) == {"supernet", "flops", "fewer_params", "depth"}
    assert set(summary["held_out"][0]["methods"]) == {"supernet", "flops", "fewer_params", "depth", "encoding",
                                                       "encoding + supernet"}
    with pytest.raises(Exception, match="--lead-over 'naswot'"):
        script.main(["--rank-json", str(bare), "--fit-sizes", "--lead-over", "naswot"])
