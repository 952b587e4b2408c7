"""Webhooks per the Standard Webhooks specification (https://www.standardwebhooks.com).

Events: ``case.completed``, ``case.failed`` (to the case's ``callback_url`` and to the
tenant's endpoints subscribed to them) and the opt-in ``image.completed`` (endpoints only).

- :mod:`~service.webhooks.endpoints`: the tenant's receivers, what they subscribe to, and
  the SSRF rules a destination must pass when it is registered.
- :mod:`~service.webhooks.outbox`: at-least-once through an outbox. An event is written as
  one delivery row per destination in the caller's transaction, the one that changes the
  state, so an event exists exactly when its state change does; after the commit the
  caller enqueues the rows, and the beat's dispatcher sends whatever is due (retries,
  messages lost in a crash). The tenant's delivery log and redelivery read and reset
  these rows.
- :mod:`~service.webhooks.delivery`: one attempt of one delivery: signed, sent to the
  checked address, and on failure scheduled again or given up.
"""
