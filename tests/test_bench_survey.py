"""saec.bench.survey_methods: the page comes from its record alone and names what falls below hashing."""

from __future__ import annotations

from saec.bench.survey_methods import render


def test_survey_page_is_rendered_from_its_record_alone(tmp_path):
    rows = [{"method": "full", "trained": "uncompressed", "auc": 0.76, "logloss": 0.58, "table_bytes": 16384,
             "ratio": 1.0, "train_s": 4.0},
            {"method": "hashing", "trained": "compressed", "auc": 0.70, "logloss": 0.65, "table_bytes": 1024,
             "ratio": 16.0, "train_s": 3.0},
            {"method": "robe", "trained": "compressed", "auc": 0.74, "logloss": 0.60, "table_bytes": 1020,
             "ratio": 16.1, "train_s": 3.0},
            {"method": "dhe", "trained": "compressed", "auc": 0.68, "logloss": 0.66, "table_bytes": 1010,
             "ratio": 16.2, "train_s": 3.0},
            {"method": "int8", "trained": "post-training", "auc": 0.76, "logloss": 0.58, "table_bytes": 6000,
             "ratio": 2.7, "compress_s": 0.1, "fixed_size": "too small"},
            {"method": "qr", "trained": "compressed", "error": "budget_bytes=10 is too small for method 'qr'"}]
    record = {"command": ["python", "benchmarks/survey_methods.py"], "environment": {"saec": "0", "date": "d"},
              "config": {"dataset": "movielens-1m", "ratio": 16.0, "epochs": 1, "hidden": [8], "seed": 0},
              "large_fields": {"user": 5400}, "rows": rows, "wall_s": 60.0, "peak_rss_mib": 100.0}
    render(record, tmp_path / "s.md", tmp_path / "s.png")
    page = (tmp_path / "s.md").read_text()
    assert "| robe | compressed | 0.7400 | +0.0400 |" in page and "| int8 (fixed size) |" in page
    assert "1 of 2 compressed methods are within 0.005 AUC" in page and "by more than 0.005): dhe." in page
    assert "qr did not run at this budget: budget_bytes=10" in page and (tmp_path / "s.png").stat().st_size
