"""Per-kernel table of one decode step from ncu's raw CSV (bench/cuda-profile.ts says how it is taken).

The run's last decode step is its launches' repeating tail: the shortest period p for which the last p kernel
names equal the p before them. Kernels of that step are summed by name: launches, time, DRAM bytes and the rate
they moved them at, against the copy bandwidth given with --bandwidth (bytes/s, read + write).
"""
import argparse
import csv
import sys
from collections import OrderedDict


def rows_of(path):
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own messages come first, unquoted
    reader = csv.reader(lines)
    header = next(reader)
    units = next(reader)
    return header, units, list(reader)


def last_period(names):
    for p in range(1, len(names) // 2 + 1):
        if names[-p:] == names[-2 * p:-p]:
            return p
    raise SystemExit("ncu_table: no repeating step found (run at least 2 decode steps)")


def scale(unit):
    return {"byte": 1, "Kbyte": 1e3, "KB": 1e3, "Mbyte": 1e6, "MB": 1e6, "Gbyte": 1e9, "GB": 1e9, "B": 1,
            "nsecond": 1e-9, "ns": 1e-9, "usecond": 1e-6, "us": 1e-6, "msecond": 1e-3, "ms": 1e-3, "second": 1, "s": 1}[unit]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--bandwidth", type=float, default=None, help="copy bandwidth, bytes/s (read + write)")
    args = parser.parse_args()
    header, units, rows = rows_of(args.csv)
    col = {name: i for i, name in enumerate(header)}
    names = [r[col["Kernel Name"]] for r in rows]
    p = last_period(names)
    step = rows[-p:]
    time_unit = scale(units[col["gpu__time_duration.sum"]])
    read_unit = scale(units[col["dram__bytes_read.sum"]])
    write_unit = scale(units[col["dram__bytes_write.sum"]])
    kernels = OrderedDict()
    for r in step:
        k = kernels.setdefault(r[col["Kernel Name"]], [0, 0.0, 0.0])
        k[0] += 1
        k[1] += float(r[col["gpu__time_duration.sum"]].replace(",", "")) * time_unit
        k[2] += (float(r[col["dram__bytes_read.sum"]].replace(",", "")) * read_unit
                 + float(r[col["dram__bytes_write.sum"]].replace(",", "")) * write_unit)
    total_time = sum(k[1] for k in kernels.values())
    total_bytes = sum(k[2] for k in kernels.values())
    ratio_head = " | of copy bandwidth" if args.bandwidth else ""
    print(f"| kernel | launches | time (us) | share | DRAM MB | GB/s{ratio_head} |")
    print("| --- | --- | --- | --- | --- | ---" + (" | --- |" if args.bandwidth else " |"))
    for name, (launches, seconds, moved) in sorted(kernels.items(), key=lambda kv: -kv[1][1]):
        rate = moved / seconds if seconds else 0.0
        ratio = f" | {rate / args.bandwidth:.2f}" if args.bandwidth else ""
        print(f"| {name[:60]} | {launches} | {seconds * 1e6:.0f} | {seconds / total_time:.3f} | {moved / 1e6:.0f} | {rate / 1e9:.0f}{ratio} |")
    rate = total_bytes / total_time
    ratio = f" | {rate / args.bandwidth:.2f}" if args.bandwidth else ""
    print(f"| all ({p} launches) | {p} | {total_time * 1e6:.0f} | 1.000 | {total_bytes / 1e6:.0f} | {rate / 1e9:.0f}{ratio} |")


if __name__ == "__main__":
    sys.exit(main())
