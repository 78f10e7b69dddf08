"""One driver per queue that benchmarks/compare.py measures (que-core and its peers).

Each runs as ``python -m benchmarks.systems.NAME_bench COMMAND N`` under the
interpreter of its system (que-core's, or the peers' venv); see _driver.py.
Nothing here may import anything at package level: the peers' venv has no que_core.
"""
