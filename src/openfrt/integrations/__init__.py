"""Events out, to a force's other systems: webhooks and an MQTT broker.

The places where things happen (an alert raised or adjudicated, a deployment started or
ended) write an :class:`~openfrt.integrations.events.Event` into the outbox in their own
transaction (:func:`~openfrt.integrations.outbox.emit`); a dispatcher in each openfrt
process (:class:`~openfrt.integrations.dispatcher.EventDispatcher`) sends it to every
destination that wants it, retrying with back-off and dead-lettering after a bounded time.
"""
