"""The chaos harness: real misbehaving upstream processes (`server`), a mixed load that knows
each request's kind, latency and upstream (`load`), and the scenario runner that puts a gateway
in front of one chaos upstream and two healthy replicas and reports what clients saw
(`harness`). Used by `tests/gateway/test_chaos.py` and `bench/chaos.py`."""
