"""Sandboxes: the guest agent's protocol, records, backends and the public ``Sandbox`` (exported
by the top-level package). This package itself imports nothing, so that the microVM monitor
(``sandbox.monitor``) starts without the pull pipeline."""
