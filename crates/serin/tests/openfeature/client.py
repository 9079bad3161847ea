"""Drives a real OpenFeature Python client against a running `serin flags serve`.

Usage: python client.py <provider> <target> [--watch] [--selector=S] [--ca=PEM] [--key=K]
  provider: ofrep            (target: base URL, e.g. http://127.0.0.1:8016)
            flagd-rpc        (target: host:port of the gRPC evaluation service)
            flagd-in-process (target: host:port of the gRPC sync service)
  --selector: flagd's selector (flagd providers send it as flagd-selector metadata; the
              OFREP provider as flagd's Flagd-Selector header, through its headers_factory)
  --ca: TLS, trusting this CA (flagd providers: tls + cert_path; OFREP: REQUESTS_CA_BUNDLE)
  --key: a Serin server key, sent as `authorization: Bearer` by gRPC call credentials (the
         provider's own channel_credentials parameter), or by the OFREP provider's
         headers_factory
Reads a JSON list of cases on stdin, each {"flag", "type", "default", "context"?,
"targetingKey"?}, and prints one JSON list of results {"value", "variant", "reason",
"error_code", "error_message"} in the same order. Evaluation errors are results, not
failures: the Rust test asserts on them.

With --watch the results are printed as one line; then, until killed, each
PROVIDER_CONFIGURATION_CHANGED event prints {"changed": [flag keys], "results": [...]} (the
cases evaluated again) on a line. No event for 30 s ends the client with status 2.
"""

import json
import os
import sys
import threading

from openfeature import api
from openfeature.evaluation_context import EvaluationContext


def option(name):
    for a in sys.argv[3:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def provider_for(kind, target):
    ca, key, selector = option("ca"), option("key"), option("selector")
    if kind == "ofrep":
        from openfeature.contrib.provider.ofrep import OFREPProvider

        if ca:
            os.environ["REQUESTS_CA_BUNDLE"] = ca
        headers = {}
        if selector:
            headers["Flagd-Selector"] = selector
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return OFREPProvider(
            base_url=target,
            timeout=10.0,
            headers_factory=(lambda: dict(headers)) if headers else None,
        )
    import grpc
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType

    host, port = target.rsplit(":", 1)
    resolver = ResolverType.RPC if kind == "flagd-rpc" else ResolverType.IN_PROCESS
    extra = {}
    if ca:
        extra.update(tls=True, cert_path=ca)
    if key:
        # Serin's server keys travel as call credentials; on plaintext loopback gRPC
        # only sends them over "local" channel credentials.
        base = (
            grpc.ssl_channel_credentials(open(ca, "rb").read())
            if ca
            else grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        )
        extra["channel_credentials"] = grpc.composite_channel_credentials(
            base, grpc.access_token_call_credentials(key)
        )
    if selector:
        extra["selector"] = selector
    return FlagdProvider(
        host=host, port=int(port), resolver_type=resolver, deadline_ms=10000, **extra
    )


def main():
    kind, target = sys.argv[1], sys.argv[2]
    watch = "--watch" in sys.argv[3:]
    cases = json.load(sys.stdin)
    changed = []
    got_change = threading.Event()

    def on_change(details):
        changed.extend(details.flags_changed or [])
        got_change.set()

    from openfeature.event import ProviderEvent

    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    api.set_provider_and_wait(provider_for(kind, target))
    client = api.get_client()
    getters = {
        "boolean": client.get_boolean_details,
        "string": client.get_string_details,
        "integer": client.get_integer_details,
        "float": client.get_float_details,
        "object": client.get_object_details,
    }

    def evaluate_all():
        return [evaluate(client, getters, case) for case in cases]

    if not watch:
        json.dump(evaluate_all(), sys.stdout)
        api.shutdown()
        return
    print(json.dumps(evaluate_all()), flush=True)
    # Until killed: one line per configuration-change event (in-process providers also
    # report the initial sync as one).
    while True:
        if not got_change.wait(30):
            print("no configuration change event within 30 s", file=sys.stderr)
            api.shutdown()
            sys.exit(2)
        got_change.clear()
        keys = sorted(set(changed))
        changed.clear()
        print(json.dumps({"changed": keys, "results": evaluate_all()}), flush=True)


def evaluate(client, getters, case):
    ctx = None
    if "context" in case or "targetingKey" in case:
        ctx = EvaluationContext(
            targeting_key=case.get("targetingKey"),
            attributes=case.get("context", {}),
        )
    d = getters[case["type"]](case["flag"], case["default"], ctx)
    reason = d.reason.value if hasattr(d.reason, "value") else d.reason
    return {
        "value": d.value,
        "variant": d.variant,
        "reason": str(reason) if reason is not None else None,
        "error_code": d.error_code.value if d.error_code is not None else None,
        "error_message": d.error_message,
        "metadata": dict(d.flag_metadata or {}),
    }


if __name__ == "__main__":
    main()
