"""Drives a real OpenFeature Python client against a running `serin flags serve`.

Usage: python client.py <provider> <target>
  provider: ofrep            (target: base URL, e.g. http://127.0.0.1:8016)
            flagd-rpc        (target: host:port of the gRPC evaluation service)
            flagd-in-process (target: host:port of the gRPC sync service)
Reads a JSON list of cases on stdin, each {"flag", "type", "default", "context"?,
"targetingKey"?}, and prints one JSON list of results {"value", "variant", "reason",
"error_code", "error_message"} in the same order. Evaluation errors are results, not
failures: the Rust test asserts on them.
"""

import json
import sys

from openfeature import api
from openfeature.evaluation_context import EvaluationContext


def provider_for(kind, target):
    if kind == "ofrep":
        from openfeature.contrib.provider.ofrep import OFREPProvider

        return OFREPProvider(base_url=target, timeout=10.0)
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType

    host, port = target.rsplit(":", 1)
    resolver = ResolverType.RPC if kind == "flagd-rpc" else ResolverType.IN_PROCESS
    return FlagdProvider(
        host=host, port=int(port), resolver_type=resolver, deadline_ms=10000
    )


def main():
    kind, target = sys.argv[1], sys.argv[2]
    cases = json.load(sys.stdin)
    api.set_provider(provider_for(kind, target))
    client = api.get_client()
    getters = {
        "boolean": client.get_boolean_details,
        "string": client.get_string_details,
        "integer": client.get_integer_details,
        "float": client.get_float_details,
        "object": client.get_object_details,
    }
    out = []
    for case in cases:
        ctx = None
        if "context" in case or "targetingKey" in case:
            ctx = EvaluationContext(
                targeting_key=case.get("targetingKey"),
                attributes=case.get("context", {}),
            )
        d = getters[case["type"]](case["flag"], case["default"], ctx)
        out.append(
            {
                "value": d.value,
                "variant": d.variant,
                "reason": str(d.reason.value if hasattr(d.reason, "value") else d.reason)
                if d.reason is not None
                else None,
                "error_code": d.error_code.value if d.error_code is not None else None,
                "error_message": d.error_message,
                "metadata": dict(d.flag_metadata or {}),
            }
        )
    api.shutdown()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
