"""The tiny hand-made trace shared by the replay and CLI tests (see test_predictor_replay.py)."""

from predictors import base

MIB = base.MIB
HOUR = 3_600_000
HEADER = (
    "task_id;hash;name;status;process;memory;attempt;submit;start;complete;realtime;peak_rss;rchar"
)
RAW_TRACE = "\n".join(
    [
        HEADER,
        f"1;aa/1;P (1);COMPLETED;P;{1024 * MIB};1;0;0;{HOUR};{HOUR};{200 * MIB};100",
        f"2;aa/2;P (2);COMPLETED;P;{1024 * MIB};1;0;{HOUR};{2 * HOUR};{HOUR};{150 * MIB};100",
        f"3;aa/3;P (3);COMPLETED;P;{1024 * MIB};1;0;{HOUR};{HOUR * 3 // 2};{HOUR // 2};"
        f"{300 * MIB};100",
    ]
)
HUMAN_TRACE = "\n".join(
    [
        HEADER.replace(";", "\t"),
        "1\taa/1\tP (1)\tCOMPLETED\tP\t1 GB\t1\t1970-01-01 00:00:00\t1970-01-01 00:00:00"
        "\t1970-01-01 01:00:00\t1h\t200 MB\t100 B",
        "2\taa/2\tP (2)\tCOMPLETED\tP\t1 GB\t1\t1970-01-01 00:00:00\t1970-01-01 01:00:00"
        "\t1970-01-01 02:00:00.000\t60m\t150 MB\t100",
        "3\taa/3\tP (3)\tCOMPLETED\tP\t1024 MB\t1\t1970-01-01 00:00:00\t1970-01-01 01:00:00"
        "\t1970-01-01 01:30:00\t30m 0s\t0.29296875 GB\t0.09765625 KB",
    ]
)
WASTAGE_GBH = 1336 * MIB / 1e9
