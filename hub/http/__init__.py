"""Transports: REST routes (:mod:`.rest`), socket routes (:mod:`.sockets`), the error
seam and ASGI middleware (:mod:`.errors`, :mod:`.middleware`)."""
