"""Helpers of ``brokerdesk drill`` (see :mod:`brokerdesk.core.drill`).

* :mod:`.services` — throwaway PostgreSQL clusters and Redis servers the drill starts, restarts
  and removes itself (never the shared ones);
* :mod:`.stack` — the running system under test: simulator, bridge, worker, sandbox PSP, and
  client journeys moving money while deals flow;
* :mod:`.invariants` — the checks run after every fault;
* :mod:`.slow_worker` — ``brokerdesk worker`` with an injected per-message delay.
"""
