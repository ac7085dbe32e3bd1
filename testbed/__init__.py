"""The test bed the tests, the benchmarks and ``make demo`` share: one process supervisor (process.py), free loopback
ports (ports.py), one percentile definition (percentile.py), Prometheus text scraping (scrape.py) and a real Prometheus
(prometheus_server.py), the CPU vLLM prefill + decode pair (cpu_pair.py, runtime_server.py, router_process.py), a
two-node data-parallel decode replica started as a LeaderWorkerSet starts one (dp_group.py), the tiny local models
(tiny_model.py, dense; tiny_moe_model.py, a mixture of experts), the vLLM CPU venv's install pieces (vllm_venv/); vLLM's
OpenAI answer shapes (openai_shapes.py) and the loopback engine over them (loopback_engine.py) that the router tests'
fault-injecting engine (fault_engine.py) and the bench's simulated engine (bench/fake_engine) both extend; ``make demo``
(demo.py) and the drawing of the README's dashboard row from a live run (panel_picture.py).

Layering (tests/runtime/test_layering.py): the test bed never imports tests/ or bench/; tests and bench import it."""
