"""Speed and memory benchmarks: run by `make bench`, never by `make test`; results in bench-results/.

`make bench` runs every case and replaces the record. `make bench PYTEST_ARGS="benchmarks/test_llm_*.py"`
(files, or a -k/-m selection) runs those cases only and merges them into the record: each case measured
replaces that case's older rows, the others stay, each shown under the run that measured it
(benchmarks.record).
"""
