"""Production rules: pure, synchronous, deterministic — samples in, event drafts out.

Counters, states, downtime, work orders, shifts; no I/O and no clock reads. The rules arrive
with the rules work; the event drafts they produce are `common.events.Draft`.
"""
