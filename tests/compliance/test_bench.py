"""The screening benchmark runs and reports the figures the issue asks for."""

from brokerdesk.compliance.bench import run


def test_the_screening_benchmark_reports_speed_precision_and_recall():
    figures = run(list_size=2_000, clients=50)

    for key in (
        "list_names",
        "one_name_p50_ms",
        "one_name_p99_ms",
        "rescreen_clients_per_s",
        "precision",
        "recall",
    ):
        assert key in figures
    assert figures["list_names"] >= 2_000
    assert figures["recall"] > 0.9 and figures["precision"] > 0.9
