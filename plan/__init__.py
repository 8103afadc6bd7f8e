"""Fleet planning: the cheapest (or least-energy) replica mix that serves a trace within its SLOs."""
