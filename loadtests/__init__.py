"""Load generator and reports for OpenAI-compatible servers (``hetserve loadtest``).

Modules, each with one job: ``trace`` (the JSONL request trace), ``workloads``
(seeded arrivals and lengths), ``prompts`` (prompt text of a token length),
``sse`` (server-sent events), ``client`` (one timed request), ``runner``
(load modes and stop rules), ``metrics`` (summary and goodput), ``fleet``
(energy from ``/v1/fleet``), ``report``/``html_report``/``plots`` (console,
JSON, CSV, HTML), ``config``/``scenario`` (what a run does, from flags or
YAML), ``cli`` and ``fake_server`` (a test double). Kept import-light: the
simulator imports ``trace`` and ``workloads`` alone.
"""
