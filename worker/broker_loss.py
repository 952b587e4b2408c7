"""Work queued when a worker's broker connection failed is sent again once the connection is back.

Redis hands a message to a worker with ``BRPOP`` and kombu records it as unacknowledged in a
second command, so a connection cut between the two (or a reply lost on the way) loses the
message, and a Redis that restarts without its data loses every queued one. The broker cannot
say which messages went; the rows say what was waiting then, and that is sent again
(:func:`service.analysis.reconcile` with ``broker_lost_at``). Without this the reconciler would
take such work for a long queue until ``FORENSICS_REQUEUE_AFTER``.

A consumer bootstep (Celery's "Extensions and Bootsteps"): the consumer blueprint stops its
steps when the connection fails and starts them again once it is re-established.
"""

import logging
from datetime import datetime
from typing import Any

from celery import bootsteps

from service.dispatch import report_broker_loss
from service.models import utcnow

logger = logging.getLogger(__name__)


class ResendAfterBrokerLoss(bootsteps.StartStopStep):
    """Remembers when the consumer's connection failed; reports it once the consumer is connected again."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.lost_at: datetime | None = None

    def start(self, parent: Any) -> None:
        if self.lost_at is not None:
            logger.warning("broker connection back (lost at %s): re-sending the work queued before", self.lost_at.isoformat())
            report_broker_loss(self.lost_at)
            self.lost_at = None

    def stop(self, parent: Any) -> None:
        # Called when the connection failed (and at shutdown, when nothing starts again).
        self.lost_at = self.lost_at or utcnow()
