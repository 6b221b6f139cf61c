"""Live facial recognition: camera sources, tracking, matching against a deployment's watchlist
snapshot, alerts and their adjudication, retention, and the published deployment record.

The pipeline reaches storage only through :class:`openfrt.live.deployments.RunningDeployment`
(the contract is in :mod:`openfrt.live.events`).
"""
