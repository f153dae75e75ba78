"""`python -m sampler_lab report`: see bench/engine_report.py."""
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m sampler_lab report [--help] [options]\n\n"
              "commands:\n  report   report/index.md: best sampler per budget, accuracy "
              "beside the peers, convergence (digits model)")
        return 0 if argv else 2
    if argv[0] == "report":
        from .bench.engine_report import main as report
        report(argv[1:])
        return 0
    print(f"unknown command {argv[0]!r}; commands: report", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
