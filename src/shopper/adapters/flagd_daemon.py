"""A flagd daemon as the source of `OpenFeatureFlagClient`'s flags (`flags_url=flagd://`).

OpenFeature's flagd provider keeps evaluating in process (`ResolverType.IN_PROCESS`: the same
core and `fractional` bucketing as on the flag file, so every shopper keeps their variant),
on the flag JSON it syncs from the daemon's sync service (`flagd.sync.v1.FlagSyncService`,
flagd's port 8015): one stream, and a new message whenever the daemon's flags change. The
definition in force (`experiment()`) is read with the same service's `FetchAllFlags` each
time the provider reports new flags, so the experiment report describes what routing uses.

A daemon that goes away leaves the provider's last flags serving; it reconnects every
`retry_ms` at most, and is caught up by the first message of the new stream.
"""

from __future__ import annotations

import logging

import grpc
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

from shopper.adapters.openfeature_flags import quiet_repeated_logs

log = logging.getLogger(__name__)

DEADLINE_MS = 2000  # how long a new client waits for the daemon's first flags
RETRY_MS = 2000  # the longest wait between two attempts to reach a daemon gone away
GRACE_S = 5  # from losing the daemon to the provider's PROVIDER_ERROR (STALE before)
FETCH_TIMEOUT_S = 2.0  # one FetchAllFlags (the daemon has just sent flags: it is there)
STREAM_DEADLINE_MS = 600_000  # the sync stream is renewed this often (a silent peer found)


class FlagdDaemonSource:
    """The flags a flagd daemon at `host:port` serves (plaintext gRPC)."""

    read_on_demand = False  # a network call: read when the provider syncs new flags

    def __init__(
        self,
        host: str,
        port: int,
        *,
        deadline_ms: int = DEADLINE_MS,
        retry_ms: int = RETRY_MS,
        grace_s: int = GRACE_S,
    ) -> None:
        quiet_repeated_logs(log)
        self._host = host
        self._port = port
        self._deadline_ms = deadline_ms
        self._retry_ms = retry_ms
        self._grace_s = grace_s
        self._channel = grpc.insecure_channel(f"{host}:{port}")
        self._sync = sync_pb2_grpc.FlagSyncServiceStub(self._channel)
        self._last: str | None = None

    def __str__(self) -> str:
        return f"the flagd daemon at {self._host}:{self._port}"

    def available(self) -> bool:
        return True  # the provider waits for the daemon itself

    def provider(self) -> FlagdProvider:
        # Everything that matters is given: the provider reads FLAGD_* variables for the rest.
        return FlagdProvider(
            resolver_type=ResolverType.IN_PROCESS,
            host=self._host,
            port=self._port,
            tls=False,
            deadline_ms=self._deadline_ms,
            retry_backoff_ms=min(1000, self._retry_ms),
            retry_backoff_max_ms=self._retry_ms,
            retry_grace_period=self._grace_s,
            stream_deadline_ms=STREAM_DEADLINE_MS,
            keep_alive_time=0,
            fatal_status_codes=[],  # none: a daemon is retried whatever it answered
            # No static context from the daemon: `fractional` buckets by flag key and
            # shopper only, as on the file.
            sync_metadata_disabled=True,
        )

    def read(self) -> str | None:
        try:
            response = self._sync.FetchAllFlags(
                sync_pb2.FetchAllFlagsRequest(), timeout=FETCH_TIMEOUT_S, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            log.warning(
                "cannot fetch the flags from %s (%s); the last definition read stays in force",
                self,
                exc.code().name if isinstance(exc, grpc.Call) else exc,
            )
            return None
        except ValueError:  # the channel is closed: the client is closing
            return None
        text: str = response.flag_configuration
        if text == self._last:
            return None
        self._last = text
        return text

    def close(self) -> None:
        self._channel.close()
