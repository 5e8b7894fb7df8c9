"""The main job: run the grid (default preset unless told otherwise). Same flags as `python -m benchmark run`."""
import sys

from benchmark.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", "--report", *sys.argv[1:]]))
